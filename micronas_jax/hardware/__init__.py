"""Hardware cost of NB201 networks on a device: latency from a lookup table, peak SRAM and flash.

  latency.py   the LUT format (JSON), load/save/validate, `estimate`, the NNLS `fit`
  profile.py   bring your own board: the plan CSV to profile and `build` from the filled plan
  analytic.py  the analytic Cortex-M7 model behind the default STM32F746 LUT
  memory.py    peak SRAM by tensor liveness and flash of int8 weights (BN folded)
  luts/        packaged LUTs (`--board NAME` reads luts/NAME.json) and their README
"""
