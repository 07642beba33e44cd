"""Cycles of the emulated Cortex-M7: executed instructions by class, priced by the M7's pipeline.

The emulator counts instructions; a Cortex-M7 does not take one cycle for each. This module
decodes every executed basic block once (capstone, Thumb-2), sorts its instructions into classes
(loads, stores, multiply-accumulates, DSP SIMD, branches, others) and prices the block by issuing
its instructions in order on a model of the M7's pipeline; each branch outcome goes through a
branch predictor. `CycleMachine` is a `Machine` whose calls return these cycles instead of
instruction counts, so every measurement written for instructions (`lut.measure`) measures cycles.

The pipeline, every number from one cited source (`PIPELINE` holds each with its source):
  - in order, at most 2 instructions issued per cycle (dual issue);
  - per cycle at most: 2 ALU ops, 1 using the early shifter, 2 loads, 1 store, 1 multiply or
    MAC, 1 DSP SIMD op, 1 branch;
  - DSP SIMD ops (SXTB16, SSAT, ...) issue only first in a cycle; load/store double and
    multiple, PUSH/POP and divides issue alone; a divide stalls issue for its latency;
  - result latencies: ALU and SIMD 1, word load 2 (load-use), byte/halfword load 3, multiply
    and MAC 2 (a MAC's accumulator is read a cycle late, so chained MACs issue back to back),
    saturation 2;
  - branches: a correctly predicted branch costs its issue slot; a mispredicted one 4 cycles.
    The predictor is a 2-bit counter per conditional branch; returns and other indirect
    branches count as mispredicted.
A block is scheduled on its own (registers ready at entry), so a dependency across a branch is
not charged. Data is taken to come from zero-wait memory (SRAM, TCM, or a cache hit); the cost
of weights read from the F746's flash is `flash_cycles`.

What this model leaves out and what it costs is stated in the LUT's provenance
(`hardware/f746_analytic.py`).
"""
from __future__ import annotations

import collections
import dataclasses
import functools

from micronas_jax.hardware.emu import machine as emu_machine

CLASSES = ("load", "store", "mac", "simd", "branch", "other")

_LLVM_M7 = ("llvm/llvm-project llvm/lib/Target/ARM/ARMScheduleM7.td @6a555331 (the Cortex-M7 "
            "scheduling model Arm contributed; facts §6 [V])")
PIPELINE = {
    "issue_width": {"value": 2, "source": _LLVM_M7 + ": IssueWidth = 2 'Dual issue for most "
                                          "instructions', MicroOpBufferSize = 0 'in-order'"},
    "units": {"value": {"alu": 2, "shift": 1, "load": 2, "store": 1, "mac": 1, "simd": 1,
                        "branch": 1},
              "source": _LLVM_M7 + ": 'two ALU, two LOAD, a STORE, a MAC, a BRANCH' pipes, "
                                   "M7UnitShift1, M7UnitSIMD (one each)"},
    "latency": {"value": {"alu": 1, "load": 2, "load_byte": 3, "mac": 2, "mac_accumulator": 1,
                          "simd": 1, "saturate": 2, "divide": 7},
                "source": _LLVM_M7 + ": LoadLatency = 2 'best case for load-use'; byte and "
                                     "half-word loads M7SlowLoad one later; WriteMAC/WriteMUL "
                                     "Latency = 2 with ReadMAC advance 1; M7WriteSIMD1 1; "
                                     "t2SSAT M7WriteShSIMD2 2; WriteDIV 7, SingleIssue"},
    "slot_rules": {"value": "SIMD first in its cycle (BeginGroup); LDRD/STRD/LDM/STM/PUSH/POP, "
                            "divides and table branches alone (SingleIssue)",
                   "source": _LLVM_M7 + ": M7Slot0Only / M7SingleIssue InstRW lists"},
    "mispredict_cycles": {"value": 4, "source": _LLVM_M7 + ": MispredictPenalty = 4 ('for "
                                                           "forward branches is 6, but 4 works "
                                                           "better')"},
}


_LLVM_M4 = ("llvm/llvm-project llvm/lib/Target/ARM/ARMScheduleM4.td @9bcdb40f (CortexM4Model; "
            "ARMProcessors.td @02ac9ddc gives it to cortex-m4 and cortex-m33, both "
            "FeatureHasNoBranchPredictor)")
_M4_TRM = ("Arm Cortex-M4 TRM (100166_0001_00) section 3.3.1 Table 3-1, and TI SWCU192 Table 3-25 "
           "and its instruction-pairing page (the same M4F table)")
_M33_MEASURED = ("jnk0le/random 'pipeline cycle test/doc/cortex_m33.md' @14b71dad: measured on an "
                 "RP2350 (Cortex-M33 r1p0); Arm publishes no M33 cycle table")
PIPELINE_M4 = {
    "issue_width": {"value": 1, "source": _LLVM_M4 + ": IssueWidth = 1 'Only IT can be "
                                          "dual-issued, so assume single-issue'"},
    "units": {"value": {"alu": 1, "shift": 1, "load": 1, "store": 1, "mac": 1, "simd": 1,
                        "branch": 1},
              "source": _LLVM_M4 + ": one M4Unit for the whole core"},
    "latency": {"value": {"alu": 1, "load": 2, "load_byte": 2, "mac": 2, "mac_accumulator": 1,
                          "simd": 1, "saturate": 1, "divide": 7},
                "source": _LLVM_M4 + ": LoadLatency = 2, WriteMAC32 2, ALU/SIMD 1; " + _M4_TRM
                          + ": MLA/SMLAL 1 cycle (chained accumulations back to back), SSAT 1, "
                            "SDIV 2-12 (7 taken: the middle of the operand-dependent range)"},
    "load_occupancy": {"value": 2, "pipelined": 1,
                       "source": _M4_TRM + ": a load takes 2 cycles; 'if the next instruction is "
                                           "an LDR or STR ... one cycle is removed from the cost "
                                           "of the next instruction'"},
    "slot_rules": {"value": "single issue", "source": _LLVM_M4},
    "branch_predictor": {"value": False, "source": _LLVM_M4 + ": FeatureHasNoBranchPredictor"},
    "taken_branch_cycles": {"value": 2, "source": _LLVM_M4 + ": MispredictPenalty = 2 'Best case "
                                                  "branch taken cost'; " + _M4_TRM + ": a taken "
                                                  "branch costs 1 + P, P = 1..3 refill cycles"},
}
PIPELINE_M33 = {
    **PIPELINE_M4,
    "latency": {"value": {"alu": 1, "load": 2, "load_byte": 2, "mac": 2, "mac_accumulator": 1,
                          "simd": 2, "saturate": 1, "divide": 7},
                "source": _M33_MEASURED + ": load-to-use 2, MAC result 2 with back-to-back "
                                          "accumulation, {s,u}xtab16 2-cycle result; divide as "
                                          "for the M4 (no M33 figure found)"},
    "load_occupancy": {"value": 1, "pipelined": 1,
                       "source": _M33_MEASURED + ": loads issue every cycle, their results 2 "
                                                 "cycles later (address generation starts in "
                                                 "stage 2, elektroniknet.de on the M33 pipeline)"},
    "slot_rules": {"value": "single issue (the M33's limited dual issue of 16-bit pairs is "
                            "not modelled)", "source": _LLVM_M4 + "; " + _M33_MEASURED},
    "taken_branch_cycles": {"value": 1, "source": _M33_MEASURED + ": a taken branch takes 2 "
                                                  "cycles (1 when paired), not taken 0"},
}
PIPELINE.update({
    "load_occupancy": {"value": 1, "pipelined": 1, "source": _LLVM_M7 + ": loads pipelined"},
    "branch_predictor": {"value": True, "source": _LLVM_M7 + ": no FeatureHasNoBranchPredictor"},
})
# The modelled cores, by the name `-mcpu` gives them.
PIPELINES = {"cortex-m7": PIPELINE, "cortex-m4": PIPELINE_M4, "cortex-m33": PIPELINE_M33}
CORE_NAMES = {"cortex-m7": "Cortex-M7", "cortex-m4": "Cortex-M4", "cortex-m33": "Cortex-M33"}


def _op(name: str, pipeline: dict = PIPELINE):
  return pipeline[name]["value"]


# Thumb-2 mnemonics (condition and width suffixes stripped) of each class.
_MAC = {"mul", "mla", "mls", "smull", "umull", "smlal", "umlal", "smulbb", "smulbt", "smultb",
        "smultt", "smlabb", "smlabt", "smlatb", "smlatt", "smlad", "smladx", "smlsd", "smlsdx",
        "smlald", "smlsld", "smuad", "smuadx", "smusd", "smmul", "smmla", "smmls", "smmulr",
        "smmlar", "smulwb", "smulwt", "smlawb", "smlawt", "umaal"}
_SIMD = {"sxtb16", "uxtb16", "sxtab16", "uxtab16", "sadd16", "ssub16", "sadd8", "ssub8",
         "uadd16", "usub16", "uadd8", "usub8", "qadd16", "qsub16", "qadd8", "qsub8", "shadd16",
         "shsub16", "uqadd16", "uqsub16", "sasx", "ssax", "qasx", "qsax", "sel", "usad8",
         "usada8", "ssat", "usat", "ssat16", "usat16", "qadd", "qsub", "qdadd", "qdsub", "sxtb",
         "sxth", "uxtb", "uxth", "sxtab", "sxtah", "uxtab", "uxtah", "pkhbt", "pkhtb", "rev",
         "rev16", "revsh", "rbit", "clz", "bfi", "bfc", "sbfx", "ubfx"}
_SATURATE = {"ssat", "usat", "ssat16", "usat16", "qadd", "qsub", "qdadd", "qdsub", "qadd16",
             "qsub16", "qadd8", "qsub8", "uqadd16", "uqsub16", "usad8", "usada8"}
_SINGLE = {"ldrd", "strd", "ldm", "ldmia", "ldmdb", "stm", "stmia", "stmdb", "push", "pop",
           "sdiv", "udiv", "tbb", "tbh"}
_SHIFTS = {"lsl", "lsls", "lsr", "lsrs", "asr", "asrs", "ror", "rors", "rrx", "rrxs"}
_CONDITIONS = ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge",
               "lt", "gt", "le", "al")


def _base(mnemonic: str) -> str:
  """The mnemonic without width (.w/.n) and condition suffixes: 'addge.w' -> 'add'."""
  name = mnemonic.split(".")[0]
  if name.startswith("it"):
    return "it"
  for cond in _CONDITIONS:
    if name.endswith(cond) and len(name) > 2 and (name[:-2] in _KNOWN or name[:-2] == "b"):
      return name[:-2]
  return name


_KNOWN = (_MAC | _SIMD | _SINGLE | _SHIFTS | {
    "ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "str", "strb", "strh", "add", "adds", "sub", "subs",
    "mov", "movs", "mvn", "cmp", "cmn", "and", "orr", "eor", "bic", "rsb", "rsbs", "adc", "sbc",
    "b", "bl", "bx", "blx", "cbz", "cbnz", "it", "tst", "teq", "movw", "movt", "orn", "nop"})


def classify(mnemonic: str) -> str:
  """The class (one of CLASSES) of a Thumb-2 instruction, from its capstone mnemonic."""
  name = _base(mnemonic)
  if name.startswith("ldr") or name in ("ldm", "ldmia", "ldmdb", "pop"):
    return "load"
  if name.startswith("str") or name in ("stm", "stmia", "stmdb", "push"):
    return "store"
  if name in _MAC:
    return "mac"
  if name in _SIMD:
    return "simd"
  if name in ("b", "bl", "bx", "blx", "cbz", "cbnz", "tbb", "tbh"):
    return "branch"
  return "other"


@dataclasses.dataclass(frozen=True)
class Block:
  """One decoded basic block.

  Attributes:
    classes: instructions per class, in CLASSES order.
    cycles: cycles to issue the block in order from an idle pipeline.
    conditional: the block ends with a conditional branch (its outcome goes to the predictor).
    indirect: the block ends with an indirect branch (a return): always charged a mispredict.
    fallthrough: the address after the block (where a branch not taken continues).
  """
  classes: tuple[int, ...]
  cycles: int
  conditional: bool
  indirect: bool
  fallthrough: int


def _units(name: str, klass: str, shifted: bool) -> list[str]:
  if klass == "load":
    return ["load"]
  if klass == "store":
    return ["store"]
  if klass == "mac":
    return ["mac"]
  if klass == "branch":
    return ["branch"]
  if klass == "simd":
    return ["simd", "alu"] + (["shift"] if name in _SATURATE else [])
  return ["alu"] + (["shift"] if shifted or name in _SHIFTS else [])


def _latency(name: str, klass: str, pipeline: dict = PIPELINE) -> int:
  lat = _op("latency", pipeline)
  if klass == "load":
    return lat["load_byte"] if name[3:4] in ("b", "h", "s") else lat["load"]
  if klass == "mac":
    return lat["mac"]
  if name in ("sdiv", "udiv"):
    return lat["divide"]
  if name in _SATURATE:
    return lat["saturate"]
  return lat["simd"] if klass == "simd" else lat["alu"]


def schedule(instructions, pipeline: dict = PIPELINE) -> int:
  """Cycles to issue capstone `instructions` (one block, detail on) in order on `pipeline`'s
  core (default the M7's)."""
  import capstone

  width, units = _op("issue_width", pipeline), _op("units", pipeline)
  lat = _op("latency", pipeline)
  occupancy = pipeline["load_occupancy"]
  previous_memory = False  # the last instruction was a load or store
  ready: dict[int, tuple[int, str]] = {}  # register -> (cycle its value is ready, producer class)
  cycle, slot, used = 0, 0, collections.Counter()
  for ins in instructions:
    name, klass = _base(ins.mnemonic), classify(ins.mnemonic)
    reads, writes = ins.regs_access()
    if ins.cc not in (capstone.arm.ARM_CC_AL, capstone.arm.ARM_CC_INVALID) or name in ("it",):
      reads = [*reads, capstone.arm.ARM_REG_CPSR]
    if ins.update_flags:
      writes = [*writes, capstone.arm.ARM_REG_CPSR]
    earliest = 0
    for reg in reads:
      at, producer = ready.get(reg, (0, ""))
      if klass == "mac" and producer == "mac":  # the accumulator is read a cycle late
        at -= lat["mac"] - lat["mac_accumulator"]
      earliest = max(earliest, at)
    shifted = any(getattr(op, "shift", None) is not None and op.shift.type != 0
                  for op in ins.operands)
    need = collections.Counter(_units(name, klass, shifted))
    single, first = name in _SINGLE, klass == "simd"
    if earliest > cycle:
      cycle, slot, used = earliest, 0, collections.Counter()
    while (slot >= width or ((single or first) and slot > 0)
           or any(used[u] + n > units[u] for u, n in need.items())):
      cycle, slot, used = cycle + 1, 0, collections.Counter()
    used.update(need)
    slot = width if single else slot + 1
    for reg in writes:
      ready[reg] = (cycle + _latency(name, klass, pipeline), klass)
    if klass == "load":  # a blocking load (the M4's) holds the pipeline, less when pipelined
      extra = (occupancy["pipelined"] if previous_memory else occupancy["value"]) - 1
      if extra > 0:
        cycle, slot, used = cycle + extra, width, collections.Counter()
    previous_memory = klass in ("load", "store")
    if name in ("sdiv", "udiv"):  # a divide stalls issue for its latency
      cycle, slot, used = cycle + lat["divide"], 0, collections.Counter()
  return cycle + (1 if slot else 0)


def _decoder():
  import capstone
  md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
  md.detail = True
  return md


def decode_block(code: bytes, address: int, md=None, pipeline: dict = PIPELINE) -> Block:
  """The Block of Thumb-2 `code` starting at `address`, scheduled on `pipeline`."""
  import capstone
  instructions = list((md or _decoder()).disasm(code, address))
  counts = collections.Counter(classify(i.mnemonic) for i in instructions)
  last = instructions[-1] if instructions else None
  name = _base(last.mnemonic) if last else ""
  conditional = bool(last) and (name in ("cbz", "cbnz") or (
      name == "b" and last.cc not in (capstone.arm.ARM_CC_AL, capstone.arm.ARM_CC_INVALID)))
  writes_pc = bool(last) and capstone.arm.ARM_REG_PC in last.regs_access()[1]
  indirect = bool(last) and (name in ("bx", "tbb", "tbh") or (name == "blx" and not any(
      op.type == capstone.arm.ARM_OP_IMM for op in last.operands)) or (
      writes_pc and name not in ("b", "bl", "blx", "cbz", "cbnz")))
  return Block(tuple(counts[c] for c in CLASSES), schedule(instructions, pipeline), conditional,
               indirect, address + len(code))


class CycleMachine(emu_machine.Machine):
  """A `Machine` whose `call` returns modeled cycles of `core` (PIPELINES; default the
  Cortex-M7) in place of instructions. On a core without a branch predictor (M4, M33) every
  taken branch costs `taken_branch_cycles`.

  `classes()` gives the executed instructions per class since the last `clear_classes()`.
  Needs the `capstone` package (in the `emu` extra).
  """

  def __init__(self, elf=None, core: str = "cortex-m7"):
    if core not in PIPELINES:
      raise ValueError(f"Unknown core {core!r}; known: {', '.join(PIPELINES)}")
    self.core, self._pipeline = core, PIPELINES[core]
    self._md = _decoder()
    self._blocks: dict[int, Block] = {}
    self._hits: collections.Counter = collections.Counter()
    self._counters: dict[int, int] = {}
    self._previous: Block | None = None
    self._previous_address = 0
    self.mispredicts = 0
    super().__init__(elf)

  def _on_block(self, uc, address, size, _):
    block = self._blocks.get(address)
    if block is None or block.fallthrough != address + size:
      start = address - emu_machine.CODE_BASE
      block = self._blocks[address] = decode_block(
          bytes(self._image[start:start + size]), address, self._md, self._pipeline)
    self._hits[address] += 1
    cycles = block.cycles
    previous = self._previous
    if previous is not None and not _op("branch_predictor", self._pipeline):
      if address != previous.fallthrough:  # taken: the pipeline refills
        cycles += _op("taken_branch_cycles", self._pipeline)
    elif previous is not None:
      if previous.conditional:
        taken = address != previous.fallthrough
        state = self._counters.get(self._previous_address, 1)  # weakly not taken
        if (state >= 2) != taken:
          cycles += _op("mispredict_cycles", self._pipeline)
          self.mispredicts += 1
        self._counters[self._previous_address] = min(state + 1, 3) if taken else max(state - 1, 0)
      elif previous.indirect:
        cycles += _op("mispredict_cycles", self._pipeline)
        self.mispredicts += 1
    self._previous, self._previous_address = block, address
    self._executed += cycles

  def call(self, name: str, *args) -> tuple[int, int]:
    """Runs C function `name(*args)` -> (r0 as int32, modeled cycles)."""
    self._previous = None
    return super().call(name, *args)

  def classes(self) -> dict[str, int]:
    """Executed instructions per class (CLASSES) since the last `clear_classes()`."""
    totals = collections.Counter()
    for address, hits in self._hits.items():
      for klass, n in zip(CLASSES, self._blocks[address].classes):
        totals[klass] += n * hits
    return {klass: totals[klass] for klass in CLASSES}

  def clear_classes(self) -> None:
    """Restarts the per-class counts and the mispredict count."""
    self._hits.clear()
    self.mispredicts = 0


@functools.cache
def capstone_missing() -> str | None:
  """Why the cycle model cannot run here (capstone not installed), or None."""
  try:
    import capstone  # noqa: F401
  except ImportError:
    return "Python package capstone not installed (pip install 'micronas-jax[emu]')"
  return None
