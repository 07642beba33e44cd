"""Rank statistics of micronas_jax.ground_truth and the benchmark scripts on tiny tables (fast)."""
import math
import sys

import numpy as np
import pytest

from benchmarks import __main__ as entry
from benchmarks import correlation, summary
from micronas_jax import ground_truth, scoring, space, store

# --- rank statistics ------------------------------------------------------------------------


def test_rank_correlation_with_ties_drops_nan_rows():
  # Finite pairs: score [1, 2, 2, 3] vs truth [1, 3, 2, 4]. Of the 6 pairs 5 are concordant, 0
  # discordant, 1 tied in score only: tau-b = 5 / sqrt((6 - 1) * 6). Average ranks
  # [1, 2.5, 2.5, 4] vs [1, 3, 2, 4]: rho = 4.5 / sqrt(4.5 * 5).
  score = [1, 2, 2, 3, np.nan, 7]
  truth = [1, 3, 2, 4, 5, np.nan]
  c = ground_truth.rank_correlation(score, truth)
  assert c.cells == 4
  assert c.tau == pytest.approx(5 / math.sqrt(30), abs=1e-12)
  assert c.rho == pytest.approx(4.5 / math.sqrt(22.5), abs=1e-12)


def test_rank_correlation_of_a_constant_score_is_nan():
  c = ground_truth.rank_correlation([2, 2, 2], [1, 2, 3])
  assert math.isnan(c.tau) and math.isnan(c.rho) and c.cells == 3


def test_orient_negates_lower_is_better():
  np.testing.assert_array_equal(ground_truth.orient([1, 5], False), [-1, -5])
  np.testing.assert_array_equal(ground_truth.orient([1, 5], True), [1, 5])


def test_aggregate_ranks_sums_oriented_average_ranks_and_keeps_nan():
  # a ranks [3, 1, 2, -]; b (lower is better, so negated) ranks [2.5, 1, 2.5, -]; the NaN row
  # of a is left out of both rankings.
  a = np.array([0.9, 0.1, 0.5, np.nan])
  b = ground_truth.orient([10, 30, 10, 0], higher_is_better=False)
  total = ground_truth.aggregate_ranks({"a": a, "b": b})
  np.testing.assert_array_equal(total[:3], [5.5, 2, 4.5])
  assert np.isnan(total[3])


def test_top_k_accuracy_shares_tied_places_and_skips_nan():
  score = [5, 9, 7, 7, np.nan, 1]
  truth = [50, 90, 70, 60, 99, 10]
  assert ground_truth.top_k_accuracy(score, truth, 1) == 90
  # Second place is shared by the two 7s: 90 plus the mean of 70 and 60, over two.
  assert ground_truth.top_k_accuracy(score, truth, 2) == pytest.approx((90 + 65) / 2)
  assert ground_truth.top_k_accuracy(score, truth, 3) == pytest.approx((90 + 70 + 60) / 3)
  assert math.isnan(ground_truth.top_k_accuracy(score, truth, 6))  # only 5 finite cells
  with pytest.raises(ValueError, match="k must be"):
    ground_truth.top_k_accuracy(score, truth, 0)


def test_quantile_groups_split_by_value_and_keep_ties_together():
  group, edges = ground_truth.quantile_groups(np.arange(1, 9), 4)
  np.testing.assert_array_equal(group, [0, 0, 1, 1, 2, 2, 3, 3])
  assert edges[0] == 1 and edges[-1] == 8
  group, _ = ground_truth.quantile_groups([1, 1, 1, 1, 1, 2, 3, 4], 4)
  assert len(set(group[:5])) == 1  # five equal values: one group, whatever the edges say


# --- correlation.py on a tiny table ---------------------------------------------------------


@pytest.fixture
def tiny(tmp_path):
  """40 cells: ntk falls and lr rises with accuracy; `noise` is an unregistered column."""
  rng = np.random.default_rng(0)
  acc = rng.uniform(80, 94, 40)
  truth = tmp_path / "acc.csv"
  truth.write_text("index,test_acc\n" + "".join(f"{i},{a}\n" for i, a in enumerate(acc)))
  scores = tmp_path / "scores.csv"
  rows = [f"{i},x,0,h,{100 - a},1,{a * 10},1,{rng.normal()}\n" for i, a in enumerate(acc)]
  rows.append("3,x,1,h,0,1,0,1,0\n")  # a second seed: not used
  scores.write_text("index,arch,seed,config_hash,ntk,ntk_valid,lr,lr_valid,noise\n"
                    + "".join(rows))
  return scores, truth


def run(tiny, *extra):
  scores, truth = tiny
  return correlation.main([str(scores), "--truth", str(truth), "--no-write", *extra])


def test_correlation_orients_registered_proxies_and_keeps_others_raw(tiny):
  text = run(tiny)
  lines = {}
  for line in text.splitlines():  # the first row of each name: the overall tables
    lines.setdefault(line.split(" | ")[0].strip("| "), line)
  assert "| lower is better | 0 | 40 | 1.000 | 1.000 |" in lines["ntk"]
  best = f"{max(ground_truth.read_accuracy(tiny[1])):.2f}"
  assert lines["ntk"].split(" | ")[6] == best  # a perfect score's top-1 is the best cell
  assert "| higher is better | 0 | 40 | 1.000 | 1.000 |" in lines["lr"]
  assert "unregistered, raw value" in lines["noise"]
  assert "ntk+lr (TE-NAS ranks)" in lines
  # ntk and lr reach rho 1: aggregated together; the quartile table lists every score.
  assert "ntk+lr (ranks; rho >= 0.85)" in lines
  assert text.count("| noise |") == 2


def test_correlation_says_none_reach_the_threshold(tiny, tmp_path):
  scores, truth = tiny
  flat = tmp_path / "flat.csv"
  flat.write_text("\n".join(line.rsplit(",", 5)[0] + ",7,1,7,1" if i else
                            "index,arch,seed,config_hash,ntk,ntk_valid,lr,lr_valid"
                            for i, line in enumerate(scores.read_text().splitlines()[:-1])))
  text = correlation.main([str(flat), "--truth", str(truth), "--no-write"])
  assert "none reach 0.85" in text


def test_correlation_aggregate_option_and_unknown_column(tiny):
  assert "noise+lr (ranks)" in run(tiny, "--aggregate", "noise,lr")
  with pytest.raises(SystemExit, match="no score column synflow"):
    run(tiny, "--aggregate", "synflow,lr")


def test_correlation_sample_takes_a_seeded_subset(tiny):
  first = run(tiny, "--sample", "16", "--seed", "1")
  assert "random sample of 16 cells (seed 1)" in first
  assert first == run(tiny, "--sample", "16", "--seed", "1")


def test_correlation_plot_or_message_without_matplotlib(tiny, tmp_path, monkeypatch, capsys):
  png = tmp_path / "c.png"
  pytest.importorskip("matplotlib")
  run(tiny, "--plot", str(png))
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  run(tiny, "--plot", str(tmp_path / "d.png"))
  assert "no plot: it needs matplotlib" in capsys.readouterr().err
  assert not (tmp_path / "d.png").exists()


def test_correlation_reads_a_score_store(tiny, tmp_path):
  _, truth = tiny
  acc = ground_truth.read_accuracy(truth)
  config = scoring.ScoreConfig(proxies=("ntk", "lr"))
  path = tmp_path / "s.sqlite"
  with store.ScoreStore(path, config.to_dict(), config.hash(), config.proxies) as scores:
    scores.write([{"index": i, "arch": space.format_arch(space.arch_at(i)), "ntk": -acc[i],
                   "ntk_valid": True, "lr": acc[i], "lr_valid": i != 0} for i in range(12)], 0)
  text = correlation.main([str(path), "--truth", str(truth), "--no-write"])
  assert "| ntk | lower is better | 0 | 12 | 1.000 | 1.000 |" in text  # -acc, negated back
  assert "| lr | higher is better | 1 | 12 | 1.000 | 1.000 |" in text


def test_correlation_bad_truth_is_one_message(tiny, tmp_path):
  scores, _ = tiny
  with pytest.raises(SystemExit, match="no such benchmark table"):
    correlation.main([str(scores), "--truth", str(tmp_path / "none.csv"), "--no-write"])


# --- entry point and summary ---------------------------------------------------------------

RESULTS = """# Benchmark results

## Proxy correlation with CIFAR-10 accuracy

| score | direction | invalid rows | cells | Kendall tau | Spearman rho |
| --- | --- | ---: | ---: | ---: | ---: |
| ntk | lower is better | 3 | 40 | 0.374 | 0.541 |

| score | Q1 | Q2 |
| --- | ---: | ---: |
| ntk | 0.1 / 0.2 | 0.3 / 0.4 |

## Pruning and table search quality

### fast mode

- Unconstrained accuracy: mean **93.38%** ± 0.21 (target >= 93.9).

## Something new

| a | b |
| --- | --- |
| 1 | 2 |
"""


def test_summary_parses_headlines_of_each_section():
  rows = summary.headlines(RESULTS)
  assert rows == [
      ("Proxy correlation with CIFAR-10 accuracy", "ntk", "Kendall tau 0.374, Spearman rho 0.541"),
      ("Pruning and table search quality / fast mode", "Unconstrained accuracy: mean", "93.38%"),
      ("Something new", "(no headline parsed)", "see benchmarks/RESULTS.md")]


def test_entry_point_lists_and_forwards_subcommands(tmp_path, capsys):
  assert entry.main([]) == 0
  listed = capsys.readouterr().out
  for name in ("correlation", "throughput", "search-quality", "latency-fit", "torch-reference",
               "summary"):
    assert f"  {name} " in listed
  assert entry.main(["nope"]) == 2
  results = tmp_path / "RESULTS.md"
  results.write_text(RESULTS)
  argv = sys.argv
  assert entry.main(["summary", "--results", str(results)]) == 0
  assert sys.argv == argv  # restored
  assert "| Pruning and table search quality / fast mode |" in capsys.readouterr().out


def test_every_benchmark_script_is_a_subcommand():
  scripts = {path.stem for path in entry.HERE.glob("*.py")
             if 'if __name__ == "__main__":' in path.read_text() and path.stem != "__main__"}
  assert scripts == set(entry.SUBCOMMANDS.values())


# --- Table I ----------------------------------------------------------------------------------


def test_table1_pareto_front_keeps_cells_no_other_beats_in_latency_and_accuracy():
  # table1 draws the front of search.table.pareto_front with accuracy negated (higher better).
  from micronas_jax.search import table
  latency = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 1.0])
  accuracy = np.array([95.0, 90.0, 91.0, 89.0, 94.0, 88.0])
  # Cell 5 ties cell 1 on latency with less accuracy; cell 3 is slower and worse than cell 1.
  assert table.pareto_front(-accuracy, latency).tolist() == [1, 2, 4, 0]


def test_table1_speedup_is_over_the_same_seeds_tenas_pick():
  from benchmarks import table1
  picks = {"TE-NAS|0": {"index": 0, "seconds": 2.0}, "TE-NAS|1": {"index": 1, "seconds": 1.0},
           "MicroNAS FLOPs w=0.5|0": {"index": 2, "seconds": 1.0},
           "MicroNAS FLOPs w=0.5|1": {"index": 2, "seconds": 1.0},
           "MicroNAS latency w=0.5|0": {"index": 1, "seconds": 1.0},
           "MicroNAS latency w=0.5|1": {"index": 1, "seconds": 1.0}}
  costs = {"latency_ms": np.array([8.0, 4.0, 2.0]), "flops_m": np.array([3.0, 2.0, 1.0]),
           "params_m": np.array([0.3, 0.2, 0.1])}
  rows = table1.summarize({"picks": picks}, [0.5], 2, np.array([94.0, 93.0, 92.0]), costs)
  assert [r["method"] for r in rows] == ["TE-NAS", "MicroNAS FLOPs w=0.5",
                                         "MicroNAS latency w=0.5"]
  assert rows[0]["speedup"].tolist() == [1.0, 1.0]
  assert rows[1]["speedup"].tolist() == [4.0, 2.0]  # 8/2 for seed 0, 4/2 for seed 1
  assert rows[2]["speedup"].tolist() == [2.0, 1.0]
  assert rows[1]["acc"].tolist() == [92.0, 92.0]
  assert "| MicroNAS FLOPs w=0.5 | 92.00 ± 0.00 | 1.0 | 0.100 | 2.0 | 3.00x | 1.0 | 1 |" in \
      table1.render(rows)


# --- search_quality.py's table mode ------------------------------------------------------------


def test_search_quality_table_mode_picks_the_best_scored_cell_under_each_limit(tmp_path):
  from benchmarks import search_quality
  from micronas_jax.hardware import latency
  rng = np.random.default_rng(0)
  accuracy = rng.uniform(80, 94, space.NUM_CELLS)
  all_latency = np.asarray(latency.estimate(space.all_archs(), latency.board("stm32f746")))
  # With the fastest cell scored, every limit down to a third of the pick's latency is meetable.
  scored = np.union1d(rng.choice(space.NUM_CELLS, 39, replace=False), [np.argmin(all_latency)])
  config = scoring.ScoreConfig(proxies=("ntk_fast", "lr"))
  path = tmp_path / "s.sqlite"
  with store.ScoreStore(path, config.to_dict(), config.hash(), config.proxies) as scores:
    # Both indicators follow accuracy, so the objective's best is the most accurate scored cell.
    scores.write([{"index": int(i), "arch": space.format_arch(space.arch_at(int(i))),
                   "ntk_fast": 100 - accuracy[i], "ntk_fast_valid": True, "lr": accuracy[i],
                   "lr_valid": True} for i in scored], 0)
  limit = float(np.median(all_latency[scored]))
  result = search_quality.run_table("fast", path, accuracy, limits_ms=[limit], limit_seeds=[4])
  (row,) = result["rows"]
  assert row["index"] == scored[np.argmax(accuracy[scored])]
  under = scored[all_latency[scored] <= limit]
  assert row["limited_index"] == under[np.argmax(accuracy[under])]
  assert row["best_feasible_acc"] == accuracy[all_latency <= limit].max()
  assert row["gap"] == pytest.approx(row["best_feasible_acc"] - accuracy[row["limited_index"]])
  assert row["seed"] == 4 and result["cells"] == len(scored)
  assert search_quality.render(result, "cmd").startswith("### table search, ntk_fast, ")
  default = search_quality.run_table("fast", path, accuracy)["rows"][0]  # a third of the pick's
  assert default["limit_ms"] == pytest.approx(all_latency[row["index"]] / 3)


def test_search_quality_feeds_the_given_images_to_the_search_and_names_them(additive, tmp_path,
                                                                            monkeypatch):
  from benchmarks import search_quality
  from micronas_jax import data
  from micronas_jax.search import prune
  images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  np.savez(tmp_path / "photos.npz", images=images)
  searcher, calls = prune.PruneSearch(additive.indicators(), repeats=1), []
  monkeypatch.setattr(prune, "prune_search",
                      lambda config, images=None: calls.append((config, images)) or searcher)
  accuracy = np.linspace(80, 94, space.NUM_CELLS)
  result = search_quality.run("fast", 1, accuracy, 1, images_path=tmp_path / "photos.npz")
  (config, passed), *others = calls  # one call per search, all with the same configuration
  assert all(other[0] == config and other[1] is passed for other in others)
  np.testing.assert_allclose(passed, data.load_images(tmp_path / "photos.npz"))
  assert config.data == data.fingerprint(passed) == result["images_sha256_16"]
  text = search_quality.render(result, "cmd")
  assert text.startswith("### fast mode, photos.npz images, ")
  assert "the images of `photos.npz`" in text and "standard-normal" not in text
  plain = search_quality.run("fast", 1, accuracy, 1)
  assert calls[-1][1] is None and plain["images"] is None
  assert "standard-normal inputs" in search_quality.render(plain, "cmd")


def test_sweep_limits_are_latency_quantiles_met_by_that_share_of_cells():
  from benchmarks import search_quality
  all_latency = np.arange(1.0, 101.0)  # 100 cells of 1..100 ms
  limits = search_quality.sweep_limits(all_latency, 3)
  # Quantiles 0.02, 0.5, 0.98 of 1..100 (linear interpolation): 1 + 99 q.
  np.testing.assert_allclose(limits, [2.98, 50.5, 98.02])
  assert [(all_latency <= limit).mean() for limit in limits] == [0.02, 0.5, 0.98]


def test_search_quality_weighs_latency_only_in_the_limited_search(additive, monkeypatch):
  from benchmarks import search_quality
  from micronas_jax.search import prune
  searcher, weights_seen = prune.PruneSearch(additive.indicators(), repeats=1), []
  search = searcher.search
  monkeypatch.setattr(searcher, "search", lambda seed, weights, *rest: (
      weights_seen.append(weights), search(seed, weights, *rest))[1])
  monkeypatch.setattr(prune, "prune_search", lambda config, images=None: searcher)
  result = search_quality.run("fast", 1, np.linspace(80, 94, space.NUM_CELLS), 1,
                              limited_w_latency=0.4)
  free, limited = weights_seen
  assert (free.ntk, free.lr, free.latency) == (0.5, 0.5, 0.0)
  assert limited.latency == 0.4 and limited.ntk == limited.lr == pytest.approx(0.3)
  assert ", limited search w_latency 0.4, " in search_quality.render(result, "cmd")


def test_correlation_defaults_to_the_shipped_whole_space_table():
  args = correlation.parse_args([])
  assert args.scores.name == "nb201_scores_h100_seed0_r1.csv.gz" and args.scores.is_file()


def test_search_evolution_tenas_row_is_the_six_cells_of_five_conv3x3_and_one_conv1x1():
  from benchmarks import search_evolution
  from micronas_jax import complexity
  row = search_evolution.tenas_row()
  # One conv 1x1 on any of the 6 edges -> 6 cells, all of the paper's 188.66 MFLOPs.
  assert len(row) == 6
  np.testing.assert_allclose(complexity.flops(space.all_archs()[row]) / 1e6, 188.66241, atol=1e-4)


def test_search_evolution_summary_counts_gaps_and_table1_picks():
  from benchmarks import search_evolution
  accuracy = np.linspace(80, 94, space.NUM_CELLS)
  saved = {"limits": [1.0], "searches": {
      "0|free": {"index": 10, "test_acc": 94.0, "seconds": 50.0, "limit": None},
      "1|free": {"index": 11, "test_acc": 93.0, "seconds": 20.0, "limit": None},
      "0|sweep|0": {"index": 1, "test_acc": 90.0, "best_feasible": 90.5, "seconds": 5.0,
                    "limit": 1.0},
      "0|sweep|1": {"index": 2, "test_acc": 90.0, "best_feasible": 92.0, "seconds": 5.0,
                    "limit": 2.0}}}
  for seed in (0, 1):
    for name in search_evolution.LUTS:
      saved["searches"][f"{seed}|table1|{name}"] = {
          "index": search_evolution.MICRONAS_PICK + seed, "test_acc": 93.0, "seconds": 9.0,
          "limit": 300.0}
  summary = search_evolution.summarize(saved, accuracy)
  assert summary["free_mean"] == 93.5 and summary["free_std"] == 0.5
  # Gaps 90.5 - 90 and 92 - 90: mean 1.25, max 2.
  assert summary["gap_mean"] == pytest.approx(1.25) and summary["gap_max"] == pytest.approx(2.0)
  assert summary["gap_within_05"] == 1 and summary["sweep_seeds"] == 1
  # Picks 13987 and 13988: accuracy rises with the index here, so both are at least 13987's.
  assert summary["table1_stm32f746"]["at_least_13987"] == 2
  text = search_evolution.render(summary, saved, "cmd")
  assert "93.50 ± 0.50 %" in text and "mean gap 1.25, max 2.00" in text


def test_fitness_ablation_picks_the_fittest_cell_meeting_the_limit():
  from benchmarks import fitness_ablation
  columns = {"a": np.zeros(space.NUM_CELLS), "b": np.zeros(space.NUM_CELLS)}
  columns["a"][[3, 7, 9]] = [3.0, 2.0, 1.0]
  columns["b"][[3, 7, 9]] = [1.0, 3.0, 2.0]
  mask = np.zeros(space.NUM_CELLS, bool)
  mask[[3, 7, 9]] = True
  # Ranks among the three: a (3, 2, 1), b (1, 3, 2): F = log(r_a r_b / 9) -> 3, 6, 2: cell 7.
  assert fitness_ablation.pick(columns, {"a": True, "b": True}, mask) == 7
  mask[7] = False  # ranks among 3 and 9: a (2, 1), b (1, 2): a tie, the lower index wins
  assert fitness_ablation.pick(columns, {"a": True, "b": True}, mask) == 3


def test_search_evolution_side_by_side_pairs_seeds_and_limits():
  from benchmarks import search_evolution
  rows = [{"seed": s, "acc": 93.0 + s, "gap": 2.0, "seconds": 40.0, "best_feasible_acc": 92.0}
          for s in (0, 1, 2)]
  saved = {"searches": {"0|free": {"test_acc": 94.0, "seconds": 50.0},
                        "0|prune-limit": {"test_acc": 91.5},
                        "1|free": {"test_acc": 94.2, "seconds": 20.0},
                        "1|prune-limit": {"test_acc": 91.0}}}  # seed 2 not searched: left out
  text = search_evolution.side_by_side(saved, rows)
  # Evolution: 94.1 ± 0.1, gaps 0.5 and 1.0; pruning over seeds 0 and 1: 93.5 ± 0.5, gaps 2, 2.
  assert "same images and seeds (2;" in text
  assert "| evolution (default) | 94.10 ± 0.10 % | 0.75, 1.00 | 20.0 |" in text
  assert "93.50 ± 0.50 % | 2.00, 2.00 | 40.0 |" in text
  assert search_evolution.side_by_side({"searches": {}}, rows) == ""


def test_write_subsection_replaces_its_own_heading_and_creates_the_section(tmp_path):
  from benchmarks import _results
  path = tmp_path / "RESULTS.md"
  path.write_text("# r\n\n## S\n\nintro\n\n### a\n\nold a\n\n### b\n\nb\n\n## T\n\nt\n")
  _results.write_subsection("S", "### a\n\nnew a", path=path)
  # The replaced subsection moves to the end of its section; the next section is untouched.
  assert path.read_text() == ("# r\n\n## S\n\nintro\n\n### b\n\nb\n\n### a\n\nnew a\n\n"
                              "## T\n\nt\n")
  _results.write_subsection("U", "### c\n\nc", "made by a test", path)
  assert path.read_text().endswith("## U\n\nmade by a test\n\n### c\n\nc\n")
