"""An emulated Cortex-M7 running the int8 runtime's C kernels (`micronas_jax.runtime`).

machine.py builds the runtime's `kernels.c` with arm-none-eabi-gcc and runs functions in Unicorn,
counting executed instructions; kernels.py calls each kernel (and the whole network) on it;
cycles.py prices instruction traces with a Cortex-M7 cycle model; lut.py and cycle_lut.py measure
the latency LUTs from them. The numpy integer reference is `micronas_jax.runtime.reference`.
"""
