"""An emulated Cortex-M7 running the package's own int8 C kernels of the NB201 network.

machine.py builds `kernels.c` with arm-none-eabi-gcc and runs functions in Unicorn, counting
executed instructions; kernels.py calls each kernel (and the whole network) on it; reference.py is
the independent numpy int8 reference; lut.py measures the latency LUT from instruction counts.
"""
