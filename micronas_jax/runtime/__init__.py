"""The int8 runtime: the kernels' C source (`kernels.c`), their numpy integer reference
(`reference`), the kernels' parameter types (`params`), post-training quantization of a network
graph (`quantize`) and the C writers (`c_source`). Deploy and the LUT profiler both use it; the
emulator that runs it and the cycle model stay under `hardware/emu`.
"""
