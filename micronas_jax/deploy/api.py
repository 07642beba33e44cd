"""`deploy`: from a cell (and optionally its trained checkpoint) to a checked C library in a folder.

The folder is written whole or not at all: everything is made in a staging folder beside it and
renamed into place at the end, so an interruption leaves the old folder or the new one. A folder
that exists must be empty or a previous deploy (it holds MANIFEST in one of FORMATS). MANIFEST
lists every file deploy wrote with its sha256: a redeploy replaces those files, refuses while one
of them was edited since (unless forced), and keeps every other file, which the user added. One
deploy at a time writes a folder (`paths.exclusive`).
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import pathlib
import shutil
import time
from collections.abc import Callable

import numpy as np

from micronas_jax import data, export, graph, model, paths, space, train
from micronas_jax.deploy import build, codegen
from micronas_jax.deploy import program as program_module
from micronas_jax.errors import LIBRARY, Names, Param, ParamError
from micronas_jax.graph import Block, Graph, Kind
from micronas_jax.hardware import costs, latency, memory
from micronas_jax.hardware.emu import machine as emu_machine
from micronas_jax.runtime import float_reference, quantize

FORMAT = "micronas-jax-deploy/2"
# Format 1 (before the file hashes) is still a previous deploy; `_owned_files` says what of it
# deploy may replace.
FORMATS = ("micronas-jax-deploy/1", FORMAT)
MANIFEST = "deploy.json"
# The files of the folder that deploy writes (the built programs aside): what it may replace.
WRITTEN = (MANIFEST, *codegen.FILES)
DEFAULT_BOARD = "stm32f746-emu"
# Top-1 agreement of the int8 and float networks that --verify requires.
MIN_AGREEMENT = 0.98
# |emulated - LUT| / LUT instructions that --verify accepts; why this value: see `lut_instructions`.
INSTRUCTION_TOLERANCE = 0.02
# Seeds go to numpy and jax.random, which hold 32 bits unsigned.
MAX_SEED = 2**32 - 1


class DeployError(ParamError):
  """Bad input for a deploy, an output folder that is busy or cannot be written, or files there
  that would be lost; the message is one line, and the folder is as it was."""


@dataclasses.dataclass(frozen=True)
class DeployReport:
  """What `deploy` did, as plain JSON-ready data (also written to `out_dir/deploy.json`).

  Attributes:
    out_dir: the folder; files: the library's files in it.
    index, arch: the cell; network: C, N and the other `NetworkConfig` fields.
    weights: where the weights came from; calibration: what the scales were calibrated on.
    board: the board whose memory and LUT the estimates use.
    estimated: hw's estimates (`flash_bytes`, `sram_bytes`, `latency_ms`, `instructions`) and
      the board's capacities.
    planned: `arena_bytes` (the generated arena), `peak_live_bytes` (its lower bound) and
      `scratch_bytes` (the kernels' im2col and sums).
    built: per CPU, section sizes and `flash_bytes`, `sram_bytes` (stack included once
      measured); {} without the cross-compiler.
    verification: None without verify, else `bit_exact`, `emulated_images`, `agreement`,
      `agreement_images`, `instructions` (emulated), `lut_instructions`, `instruction_error`.
    checks: per check of verify ("bit-exact", "agreement", "instructions"), its `status`
      ("passed", "failed" or "skipped") and `detail` (for a skipped one, why); {} without verify.
    passed: whether no check failed (also True where none ran: see `checks`).
    notes: lines to show (forced past the board's memory, not built and why).
    seconds: wall time of the deploy.
    sha256: every file deploy wrote in the folder (MANIFEST aside), by path relative to it, and
      its sha256: what a redeploy may replace.
    kept: the other files in the folder (the user's), carried over from the previous one.
  """
  out_dir: str
  files: list
  index: int
  arch: str
  network: dict
  weights: str
  calibration: str
  board: str
  estimated: dict
  planned: dict
  built: dict
  verification: dict | None
  checks: dict
  passed: bool
  notes: list
  seconds: float
  sha256: dict
  kept: list

  def to_dict(self) -> dict:
    """The report as JSON-ready data."""
    return {"format": FORMAT, **dataclasses.asdict(self)}

  def summary(self, names: Names = LIBRARY) -> str:
    """The lines a person reads: memory estimated vs built, and the checks; `names` spells the
    parameters they mention."""
    lines = [(f"wrote {self.out_dir}: C library of cell {self.index} {self.arch} "
              f"(C={self.network['channels']}, N={self.network['cells_per_stage']})"),
             f"weights: {self.weights}", f"scales: {self.calibration}"]
    est = self.estimated
    built = self.built.get("cortex-m7")
    for what, key in (("flash", "flash_bytes"), ("SRAM", "sram_bytes")):
      line = f"{what:<6} estimated {est[key] / 1024:8.1f} KB"
      if built:
        line += (f"   built (cortex-m7) {built[key] / 1024:8.1f} KB "
                 f"({100 * (est[key] - built[key]) / built[key]:+.1f} %)")
      capacity = est.get(f"{key[:-6]}_capacity_bytes")
      if capacity:
        line += f"   board {capacity / 1024:.0f} KB"
      lines.append(line)
    if built and built.get("stack_bytes") is None:
      lines.append("SRAM built: .data + .bss only; the stack is measured by "
                   + names(Param("verify", True)))
    for cpu, sizes in self.built.items():
      lines.append(f"{cpu}: .text {sizes['text']} .rodata {sizes['rodata']} .data {sizes['data']} "
                   f".bss {sizes['bss']} bytes")
    v = self.verification
    if v:
      lines.append(f"emulated vs numpy int8 reference: "
                   f"{'bit-exact' if v['bit_exact'] else 'DIFFERENT'} on {v['emulated_images']} "
                   f"images")
      lines.append(f"int8 vs float top-1 agreement: {100 * v['agreement']:.1f} % of "
                   f"{v['agreement_images']} images (>= {100 * MIN_AGREEMENT:.0f} % required)")
      if v.get("lut_instructions"):
        lines.append(f"instructions: emulated {v['instructions']:,}, LUT {v['lut_instructions']:,} "
                     f"({100 * v['instruction_error']:+.2f} %, tolerance "
                     f"{100 * INSTRUCTION_TOLERANCE:.0f} %)")
      else:
        lines.append(f"instructions: emulated {v['instructions']:,} (not compared: see checks)")
    if self.kept:
      more = f" and {len(self.kept) - 5} more" if len(self.kept) > 5 else ""
      lines.append(f"kept {len(self.kept)} file(s) deploy did not write: "
                   f"{', '.join(self.kept[:5])}{more}")
    lines += self.notes
    lines.append(checks_line(self.checks, names))
    return "\n".join(lines)


def checks_line(checks: dict, names: Names = LIBRARY) -> str:
  """One line counting the checks by status, naming the failed ones and why each was skipped."""
  if not checks:
    return f"checks: none run ({names(Param('verify', True))} runs them)"
  parts = []
  for status in ("failed", "passed", "skipped"):
    names = [name for name, check in checks.items() if check["status"] == status]
    if not names:
      continue
    part = f"{len(names)} {status}"
    if status == "failed":
      part += f" ({', '.join(names)})"
    elif status == "skipped":
      reasons = [f"{name}: {checks[name]['detail']}" for name in names]
      part += f" ({'; '.join(reasons)})"
    parts.append(part)
  failed = any(check["status"] == "failed" for check in checks.values())
  return f"{'CHECKS FAILED' if failed else 'checks'}: {', '.join(parts)}"


def quantized_network(ops, variables, config, images) -> tuple[quantize.QuantizedNetwork, dict]:
  """The int8 network of cell `ops` from float `variables` (BN folded), its activation scales
  calibrated on normalized `images [N, r, r, c]`; with the folded float weights."""
  prog = program_module.build(ops, config)
  weights = export.folded_weights(variables, ops, config)
  ranges, _ = quantize.calibrate(prog, weights, images)
  return quantize.quantize(prog, weights, ranges), weights


def _resolve_ops(ops) -> np.ndarray:
  try:
    if isinstance(ops, (str, int, np.integer)):
      return space.resolve(str(ops))
    return space.validate_ops(ops)
  except ValueError as error:
    raise DeployError(error) from None


def _constant_output(ops) -> bool:
  """Whether the cell's output is reachable from no input: the network is one constant."""
  return not bool(graph.reachability(np.asarray(ops)).output)


def _board_lut(board: str | None, lut_path) -> latency.LUT:
  try:
    return latency.load(lut_path) if lut_path else latency.board(board or DEFAULT_BOARD)
  except (latency.LUTError, KeyError, ValueError) as error:
    raise DeployError(str(error).strip("'\"")) from None


def check_out_dir(out_dir) -> pathlib.Path:
  """The output folder, if it may be written: missing (in a writable folder), empty, or a previous
  deploy. Raises DeployError otherwise."""
  folder = pathlib.Path(out_dir)
  if not str(out_dir).strip():
    raise DeployError("empty output folder")
  if folder.exists() and not folder.is_dir():
    raise DeployError(f"{folder}: exists and is not a folder")
  if folder.is_dir() and any(folder.iterdir()) and _manifest(folder) is None:
    raise DeployError(f"{folder}: exists and is not a previous deploy (no {MANIFEST}); "
                      "remove it or choose another folder")
  # Missing folders above it are made (the rule of every output), below a writable one.
  parent = folder.resolve().parent
  while not parent.exists() and parent != parent.parent:
    parent = parent.parent
  if not parent.is_dir():
    raise DeployError(f"{folder}: {parent} is not a folder")
  if not os.access(parent, os.W_OK):
    raise DeployError(f"{folder}: {parent} is not writable")
  return folder


def _manifest(folder: pathlib.Path) -> dict | None:
  """The MANIFEST of a previous deploy in `folder`, or None where there is none."""
  try:
    manifest = json.loads((folder / MANIFEST).read_text())
  except (OSError, ValueError):
    return None
  return manifest if isinstance(manifest, dict) and manifest.get("format") in FORMATS else None


def _owned_files(folder: pathlib.Path) -> dict[str, str | None]:
  """The files of the previous deploy in `folder` that deploy wrote, by path relative to it, and
  their sha256 as written; {} where there is no previous deploy.

  MANIFEST itself is the report, always rewritten. A format-1 deploy recorded no hashes: its own
  files are the library files it lists and the ELFs it builds, each with None, and every other
  file is the user's. Whether such a file was edited cannot be known, so it is replaced only
  where this deploy writes it byte for byte the same (`_conflicts`); one it does not write again
  is kept like a user's file.
  """
  manifest = _manifest(folder) if folder.is_dir() else None
  if manifest is None:
    return {}
  hashes = manifest.get("sha256")
  if isinstance(hashes, dict):
    owned = {str(name): str(digest) for name, digest in hashes.items()}
  else:
    names = [str(name) for name in manifest.get("files") or []]
    owned = dict.fromkeys([*names, *(build.elf_path(pathlib.Path(), cpu).as_posix()
                                     for cpu in codegen.CPUS)])
  # A hand-made MANIFEST naming paths outside the folder names nothing of deploy's.
  return {name: digest for name, digest in owned.items()
          if not pathlib.PurePosixPath(name).is_absolute()
          and ".." not in pathlib.PurePosixPath(name).parts}


def _sha256(path: pathlib.Path) -> str:
  with open(path, "rb") as stream:
    return hashlib.file_digest(stream, "sha256").hexdigest()


def _file_hashes(folder: pathlib.Path) -> dict[str, str]:
  """The sha256 of every file under `folder`, by path relative to it."""
  return {path.relative_to(folder).as_posix(): _sha256(path)
          for path in sorted(folder.rglob("*")) if path.is_file() and not path.is_symlink()}


def _conflicts(folder: pathlib.Path, owned: dict, writes, written: dict | None = None) -> dict:
  """The files in `folder` that a deploy writing the paths `writes` would lose, each with why:
  deploy's own files whose content is not what `owned` records (edited since), the user's files
  at one of those paths, and, given what this deploy `written` (path -> sha256), the format-1
  files (no hash recorded) it writes differently. Checked before the work with the paths
  expected, and again after it with the files made."""
  lost = {}
  for name, digest in owned.items():
    path = folder / name
    if not os.path.lexists(path) or (digest is None and name not in (written or {})):
      continue  # Deleted since, or a format-1 file that is kept or not yet comparable.
    current = _sha256(path) if path.is_file() and not path.is_symlink() else None
    if digest is not None and current != digest:
      lost[name] = "edited since the last deploy"
    elif digest is None and current != written[name] and build.BUILD_DIR not in name.split("/"):
      # A format-1 ELF is gcc's output of the sources, which are checked: nobody edits it.
      lost[name] = "not what deploy writes now, and the older deploy recorded no hash"
  for name in writes:
    if name not in owned and os.path.lexists(folder / name):
      lost[name] = "not written by deploy"
  return lost


def _refuse_losing(folder: pathlib.Path, lost: dict, force: bool, notes: list) -> None:
  """Raises DeployError naming the files `lost` (name -> why), unless forced; forced, adds a
  note of what was replaced."""
  if not lost:
    return
  groups = {}
  for name, why in lost.items():
    groups.setdefault(why, []).append(name)
  what = ", ".join(f"{', '.join(names)} ({why})" for why, names in groups.items())
  if not force:
    raise DeployError(f"{folder}: this deploy would replace {what}; move them away or pass ",
                      Param("force", True), " to replace them")
  notes.append(f"replaced {what} (forced)")


def _carry(folder: pathlib.Path, staging: pathlib.Path, skip: set[str]) -> list[str]:
  """Puts every file of `folder` whose path is not in `skip` into `staging` at the same path (a
  hard link where the file system allows one, else a copy, so the old folder stays whole until
  the rename) and returns their paths; empty folders and symlinks are kept as well."""
  kept = []
  for root, dirs, files in os.walk(folder):
    here = pathlib.Path(root)
    for name in [*dirs, *files]:
      path = here / name
      rel = path.relative_to(folder).as_posix()
      if rel in skip or (path.is_dir() and not path.is_symlink() and any(path.iterdir())):
        continue
      target = staging / rel
      target.parent.mkdir(parents=True, exist_ok=True)
      if path.is_symlink():
        os.symlink(os.readlink(path), target)
      elif path.is_dir():
        target.mkdir(exist_ok=True)
      else:
        try:
          os.link(path, target)
        except OSError:
          shutil.copy2(path, target)
      kept.append(rel)
  return sorted(kept)


def _clear_interrupted(folder: pathlib.Path, log: Callable[[str], None]) -> None:
  """Cleans up after a deploy into `folder` that was killed (the caller holds the folder's lock,
  so none is running): restores the previous deploy where it was killed between the two renames
  of `_replace_folder`, and removes staging folders and previous deploys already replaced."""
  pattern = f".{glob.escape(folder.name)}"
  old = sorted(folder.parent.glob(f"{pattern}.old-*"), key=lambda path: path.stat().st_mtime)
  if old and not os.path.lexists(folder):
    os.replace(old.pop(), folder)
    log(f"restored {folder} as it was before a deploy that was interrupted")
  for path in [*old, *folder.parent.glob(f"{pattern}.deploy-*")]:
    shutil.rmtree(path, ignore_errors=True)


def _images(images, config, count: int, seed: int) -> tuple[np.ndarray, str]:
  """Normalized float images `[N, r, r, c]` and what they are."""
  if images is None:
    x = np.random.default_rng(seed).standard_normal((count, *config.input_shape), np.float32)
    return x, f"{count} standard-normal inputs (seed {seed}): no images given"
  if isinstance(images, (str, os.PathLike)):
    try:
      x = data.load_images(images, max_images=count, shape=config.input_shape)
    except data.DataError as error:
      raise DeployError(error) from None
    where = f"{len(x)} images of {images}"
  else:
    x, where = np.asarray(images, np.float32), f"{len(images)} given images"
  if x.ndim != 4 or x.shape[1:] != config.input_shape:
    raise DeployError(f"images of shape {list(x.shape)}; this network takes "
                      f"[N, {', '.join(map(str, config.input_shape))}]")
  if len(x) == 0:
    raise DeployError("no images given")
  return x, where


C_RUNTIME_BOARD = "stm32f746-emu"  # its runtime memory is this C library's, measured


def c_runtime_memory(lut: latency.LUT) -> tuple[int, int]:
  """(SRAM, flash) bytes of the C library's own runtime beside the network: the LUT's where
  its runtime is this library (memory plan PLAN_C), else the packaged C_RUNTIME_BOARD's (a
  TFLite Micro table's runtime is TFLM's interpreter, which the C library does not carry)."""
  if costs.memory_plan(lut) == memory.PLAN_C:
    return costs.runtime_memory(lut)
  return costs.runtime_memory(latency.board(C_RUNTIME_BOARD))


def estimate(ops, config, lut: latency.LUT) -> dict:
  """The estimates of the C library's memory (memory plan PLAN_C plus its runtime,
  `c_runtime_memory`) and, where the LUT is for this network, its latency; with the board's
  capacities."""
  runtime_sram, runtime_flash = c_runtime_memory(lut)
  result = {
      "flash_bytes": int(memory.flash(ops, config, runtime_flash, plan=memory.PLAN_C)),
      "sram_bytes": int(memory.peak_sram(ops, config, runtime_sram, plan=memory.PLAN_C)),
      "latency_ms": None, "instructions": None}
  if lut.config == config:
    result["latency_ms"] = float(latency.estimate(ops, lut))
    cpi = lut.provenance.get("cycles_per_instruction")
    if cpi and lut.clock_mhz:
      result["instructions"] = round(result["latency_ms"] * lut.clock_mhz * 1e3 / cpi)
  if lut.memory:
    result.update(flash_capacity_bytes=lut.memory.flash_bytes,
                  sram_capacity_bytes=lut.memory.sram_bytes)
  return result


def lut_instructions(prog: Graph, lut: latency.LUT) -> int | None:
  """Instructions the LUT's measured entries predict for the generated program, or None where
  the LUT has no instruction counts for this network.

  The LUT models a runtime that zeroes every node and adds every edge's output into it (an entry
  is op + add; `overhead` zeroes the nodes); the generated code writes a node's first term in
  place and adds only the others. So: stem, reductions and head as measured; a conv or pool edge
  its entry less one add (`skip_connect`); each add step one add; no overhead. What is left is
  the calls themselves and the zero fills of nodes without inputs: small against the kernels,
  hence a tolerance of INSTRUCTION_TOLERANCE.
  """
  counts = (lut.constants or {}).get("instructions")
  if counts is None or lut.config != prog.config:
    return None
  total = counts["stem"] + sum(counts["reductions"]) + counts["head"]
  for node in prog.nodes:
    if node.block is not Block.CELL:
      continue
    entries = counts["stages"][node.stage]
    if node.kind is Kind.ADD:
      total += entries["skip_connect"]
    elif node.kind is Kind.POOL3:
      total += entries["avg_pool_3x3"] - entries["skip_connect"]
    elif node.kind is Kind.CONV:
      total += entries[space.OPS[prog.ops[node.edge]]] - entries["skip_connect"]
  return int(total)


def _built(folder: pathlib.Path) -> dict:
  built = {}
  for cpu in codegen.CPUS:
    elf = build.compile_image(folder, cpu)
    sizes = emu_machine.sections(elf)
    built[cpu] = {**dataclasses.asdict(sizes), "flash_bytes": sizes.flash,
                  "sram_bytes": sizes.static_ram, "stack_bytes": None}
  return built


def _network_config(ops, checkpoint, channels: int | None, cells: int | None,
                    network: model.NetworkConfig | None = None) -> model.NetworkConfig:
  """The network `export.cell_variables` gives, known without its weights: the one a checkpoint
  records (read again there: milliseconds, against the seconds of building the weights; it must
  be `network` where one is given) or `network` (default NB201's) with C=`channels`,
  N=`cells` where given."""
  if not checkpoint:
    try:
      return export.sized_network(network, channels, cells)
    except ValueError as error:
      raise DeployError(error) from None
  if channels is not None or cells is not None:
    raise DeployError(Param("channels"), " and ", Param("cells"),
                      " come from the checkpoint; leave them out")
  try:
    meta = train.read_checkpoint(checkpoint)["meta"]
    config = model.NetworkConfig(**meta["network"])
  except train.TrainError as error:
    raise DeployError(error) from None
  except (KeyError, TypeError, ValueError) as error:
    raise DeployError(f"{train.checkpoint_path(checkpoint)}: records no network "
                      f"({type(error).__name__})") from None
  if meta.get("arch") != space.format_arch(ops):
    raise DeployError(f"{checkpoint} holds a network of arch {meta.get('arch')}, not "
                      f"{space.format_arch(ops)}")
  if network is not None and _shape(network) != _shape(config):
    raise DeployError(f"{checkpoint} holds a network of {_shape(config)}, the report "
                      f"{_shape(network)}")
  return config


def _shape(config: model.NetworkConfig) -> str:
  return (f"C={config.channels}, N={config.cells_per_stage}, input {config.resolution}x"
          f"{config.resolution}x{config.in_channels}, {config.num_classes} classes")


def deploy(ops, out_dir, checkpoint=None, images=None, *, verify: bool = False,
           force: bool = False, board: str | None = DEFAULT_BOARD, lut=None, seed: int = 0,
           channels: int | None = None, cells: int | None = None,
           network: model.NetworkConfig | None = None, calibration_images: int = 256,
           agreement_images: int = 256, emulated_images: int = 4,
           log: Callable[[str], None] = print) -> DeployReport:
  """Quantizes the network of cell `ops` to int8, writes its C library to `out_dir`, builds it
  (where arm-none-eabi-gcc is installed) and, with `verify`, checks it in the emulator.

  Args:
    ops: the cell: op indices `[6]`, an arch string or a benchmark index.
    out_dir: folder to write: missing, empty, or a previous deploy, whose files deploy wrote are
      replaced and whose other files (the user's) are kept.
    checkpoint: a `micronas-jax train` run folder or checkpoint of this cell; None: initialized
      weights (`seed`, C=`channels` or 16, N=`cells` or 5), and the report says so.
    images: calibration (and verification) images: a path `data.load_images` reads, normalized
      float `[N, r, r, c]`, or None for standard-normal inputs.
    verify: run `emulated_images` images on the emulated Cortex-M7 against the integer reference
      (bit for bit), the int8 vs float top-1 agreement on `agreement_images` images, and the
      instruction count against the LUT (skipped, and reported so, where the LUT has no counts
      for this network); needs the cross-compiler and the `emu` extra.
    force: replace deploy's files in `out_dir` that were edited since, and user files at the
      paths deploy writes; write a network that does not fit the board's flash or SRAM.
    network: the network without a checkpoint (e.g. a search report's); with one, it must be
      the checkpoint's.
    board, lut: the packaged board name, or a LUT file (wins), for estimates and capacities.
    seed: of the initialized weights and the standard-normal inputs, in 0..MAX_SEED.
    calibration_images: images (the first ones) that calibrate the activation scales; the next
      `agreement_images` check the agreement (the calibration images where there are no others).
    log: where progress lines go.

  Raises DeployError (one line), with `out_dir` as it was: for bad input, a network over the
  board (both before the weights are made), files there that would be lost, another deploy
  into the same folder, or a failed write (read-only, full disk).
  """
  start = time.perf_counter()
  ops = _resolve_ops(ops)
  lut_used = _board_lut(board, lut)
  folder = check_out_dir(out_dir)
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
      or not 0 <= seed <= MAX_SEED:
    raise DeployError(Param("seed", seed), f": a seed lies in 0..{MAX_SEED}")
  reason = emu_machine.missing()
  if verify and reason:
    raise DeployError(Param("verify", True), f" needs the emulator: {reason}")
  # The estimate needs only the network's shape, so a network that cannot fit is refused before
  # its weights are loaded or initialized (the init compiles for tens of seconds at C=16, N=5).
  config = _network_config(ops, checkpoint, channels, cells, network)
  estimated = estimate(ops, config, lut_used)
  over = [f"{what} {estimated[f'{key}_bytes'] / 1024:.1f} KB > {capacity / 1024:.0f} KB "
          f"(over by {(estimated[f'{key}_bytes'] - capacity) / 1024:.1f} KB)"
          for what, key in (("flash", "flash"), ("SRAM", "sram"))
          if (capacity := estimated.get(f"{key}_capacity_bytes")) is not None
          and estimated[f"{key}_bytes"] > capacity]
  if over and not force:
    raise DeployError(f"cell {space.index_of(ops)} does not fit {lut_used.device}: "
                      f"{'; '.join(over)}; ", Param("force", True), " writes the code anyway")
  notes = [f"does not fit {lut_used.device}: {'; '.join(over)} (written because forced)"] if over \
      else []
  x, images_note = _images(images, config, calibration_images + agreement_images, seed)

  # Every file operation on the resolved path: a symlinked folder is replaced where it points.
  real = folder.resolve()
  try:
    with paths.exclusive(real):
      _clear_interrupted(real, log)
      owned = _owned_files(real)
      builds = reason is None or emu_machine.GCC not in reason
      writes = [*codegen.FILES, *(build.elf_path(pathlib.Path(), cpu).as_posix()
                                  for cpu in codegen.CPUS if builds)]
      lost = _conflicts(real, owned, writes)
      _refuse_losing(folder, lost, force, notes)
      try:
        variables, config, weights_note = export.cell_variables(ops, checkpoint, seed, channels,
                                                                cells, network)
      except export.WeightsError as error:
        raise DeployError(error) from None
      log(f"quantizing: {weights_note}; scales from {images_note}")
      calibration, checking = x[:calibration_images], x[calibration_images:]
      if len(checking) == 0:
        checking = calibration
        images_note += "; checks run on the calibration images themselves"
      network, weights = quantized_network(ops, variables, config, calibration)
      staging = real.parent / f".{real.name}.deploy-{os.getpid()}"
      try:
        staging.mkdir()
        written = codegen.write(staging, network, weights_note)
        built, verification, checks = {}, None, {}
        if builds:
          log("building with arm-none-eabi-gcc (cortex-m7, cortex-m4)")
          built = _built(staging)
        else:
          notes.append(f"not built: {reason}")
        if verify:
          verification, checks = _verify(staging, network, weights, checking, emulated_images,
                                         lut_used, log)
          stack = verification.pop("stack_bytes")
          for sizes in built.values():
            # The M4 build differs in code only; its stack is taken to be the M7's.
            sizes["stack_bytes"] = stack
            sizes["sram_bytes"] += stack
        hashes = _file_hashes(staging)
        _refuse_losing(folder, {name: why for name, why in _conflicts(real, owned, hashes, hashes)
                                .items() if name not in lost}, force, notes)
        kept = _carry(real, staging, {MANIFEST, *hashes,
                                      *(name for name, digest in owned.items() if digest)}) \
            if real.is_dir() else []
        report = DeployReport(
            out_dir=str(folder), files=written["files"], index=int(space.index_of(ops)),
            arch=space.format_arch(ops), network=dataclasses.asdict(config),
            weights=weights_note, calibration=f"{len(calibration)} of {images_note}",
            board=lut_used.device, estimated=estimated,
            planned={"arena_bytes": written["arena_bytes"],
                     "peak_live_bytes": graph.peak_live_bytes(network.program.nodes,
                                                             network.program.size),
                     "scratch_bytes": written["scratch_bytes"]},
            built=built, verification=verification, checks=checks,
            passed=all(check["status"] != "failed" for check in checks.values()), notes=notes,
            seconds=round(time.perf_counter() - start, 1), sha256=hashes, kept=kept)
        (staging / MANIFEST).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        _replace_folder(staging, real)
      finally:
        shutil.rmtree(staging, ignore_errors=True)
  except paths.Busy:
    raise DeployError(f"{folder}: another process is deploying there; wait for it to finish or "
                      "choose another folder") from None
  except OSError as error:
    raise DeployError(paths.write_failure(folder, error)) from None
  return report


def _replace_folder(staging: pathlib.Path, folder: pathlib.Path) -> None:
  """Puts `staging` where `folder` is; a previous deploy there is removed only after, and is put
  back where the second rename fails (`_clear_interrupted` does it where it was killed)."""
  old = None
  if folder.exists():
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    os.replace(folder, old)
  try:
    os.replace(staging, folder)
  except OSError:
    if old is not None:
      os.replace(old, folder)
    raise
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def _verify(folder, network, weights, images, emulated_images: int, lut,
            log) -> tuple[dict, dict]:
  """The verification's measurements (`DeployReport.verification`, with `stack_bytes`) and its
  checks (`DeployReport.checks`)."""
  prog = network.program
  images_q = network.quantize_images(images)
  log(f"int8 reference and float network on {len(images)} images")
  reference = quantize.run(network, images_q)
  floats = float_reference.float_forward(prog, weights, images)
  agreement = float(np.mean(reference.argmax(1) == floats.argmax(1)))
  count = min(emulated_images, len(images))
  log(f"emulating {count} images on the Cortex-M7 (unicorn)")
  emulated = build.emulate(build.elf_path(folder, "cortex-m7"), images_q[:count],
                           prog.shapes[graph.LOGITS][0])
  bit_exact = bool(np.array_equal(emulated.logits, reference[:count])
                   and np.array_equal(emulated.top1, reference[:count].argmax(1)))
  instructions = int(emulated.instructions.max())
  predicted = lut_instructions(prog, lut)
  error = None if predicted is None else (instructions - predicted) / predicted
  verification = {"bit_exact": bit_exact, "emulated_images": count, "agreement": agreement,
                  "agreement_images": len(images), "instructions": instructions,
                  "lut_instructions": predicted, "instruction_error": error,
                  "stack_bytes": emulated.stack_bytes}

  def check(passed: bool, detail: str) -> dict:
    return {"status": "passed" if passed else "failed", "detail": detail}

  checks = {"bit-exact": check(bit_exact, f"emulated vs numpy int8 reference on {count} images"),
            "agreement": check(agreement >= MIN_AGREEMENT,
                               f"int8 vs float top-1 {100 * agreement:.1f} % of {len(images)} "
                               f"images (>= {100 * MIN_AGREEMENT:.0f} %)")}
  if error is None:
    checks["instructions"] = {"status": "skipped", "detail": _no_instruction_counts(prog, lut)}
  else:
    checks["instructions"] = check(abs(error) <= INSTRUCTION_TOLERANCE,
                                   f"emulated vs LUT {100 * error:+.2f} % (tolerance "
                                   f"{100 * INSTRUCTION_TOLERANCE:.0f} %)")
  return verification, checks


def _no_instruction_counts(prog: Graph, lut: latency.LUT) -> str:
  """Why `lut_instructions` predicts nothing for `prog`."""
  if (lut.constants or {}).get("instructions") is None:
    return f"the LUT ({lut.device}) has no instruction counts"
  names = {"channels": "C", "cells_per_stage": "N"}
  differ = [f"{names.get(field.name, field.name)}={getattr(prog.config, field.name)}"
            f" (LUT: {getattr(lut.config, field.name)})"
            for field in dataclasses.fields(prog.config)
            if getattr(prog.config, field.name) != getattr(lut.config, field.name)]
  return f"the LUT counts another network: {', '.join(differ)}"
