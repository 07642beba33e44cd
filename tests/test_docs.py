"""The README and docs/: every link resolves, the README stays a short page, no issue numbers.

Measured results live only in benchmarks/RESULTS.md; the README and docs/ link to its sections
(anchor links), so these tests check the links rather than copied numbers.
"""
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 220

# [text](target) and ![alt](target); the target ends at the first space or closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
  """The text outside fenced code blocks (a `# comment` in a shell block is not a heading)."""
  return "".join(part for i, part in enumerate(re.split(r"^```.*$", text, flags=re.M))
                 if i % 2 == 0)


def anchors(text: str) -> set[str]:
  """GitHub's anchors of the headings of a Markdown text: lower case, punctuation other than
  `-` and `_` dropped, spaces as `-`; a repeated heading gets `-1`, `-2`, ..."""
  result, seen = set(), {}
  for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _prose(text), flags=re.M):
    slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
    result.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
    seen[slug] = seen.get(slug, 0) + 1
  return result


def test_anchors_follow_githubs_rules():
  text = "# Latency LUT fit\n## Table I: TE-NAS vs MicroNAS\n```\n# not a heading\n```\n## x\n## x\n"
  assert anchors(text) == {"latency-lut-fit", "table-i-te-nas-vs-micronas", "x", "x-1"}
  assert anchors("## LUT agreement with the authors' `STM32F746` table, 15,625 cells") == {
      "lut-agreement-with-the-authors-stm32f746-table-15625-cells"}


def _links(page: pathlib.Path):
  for target in LINK.findall(_prose(page.read_text())):
    if not re.match(r"[a-z]+:", target):  # https:, mailto: are not checked here
      yield target


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves_to_a_file_or_a_section(page):
  links = list(_links(page))
  broken = []
  for target in links:
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    if not file.exists() or not file.is_relative_to(REPO):
      broken.append(f"{target}: no file {file}")
    elif anchor and anchor not in anchors(file.read_text()):
      broken.append(f"{target}: no section #{anchor} in {file.relative_to(REPO)}")
  assert not broken, "\n".join(broken)


def test_the_readme_links_to_the_results_and_every_docs_page():
  targets = {target.partition("#")[0] for target in _links(REPO / "README.md")}
  assert "benchmarks/RESULTS.md" in targets
  assert {f"docs/{page.name}" for page in PAGES[1:]} <= targets


def test_the_readme_is_a_short_page():
  lines = (REPO / "README.md").read_text().splitlines()
  assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_issue_numbers_and_no_copied_result_blocks(page):
  text = page.read_text()
  # "issue 18", "issue #18", "#18" (a section anchor such as #table-i is fine).
  assert not re.findall(r"(?i)\bissues?\s+#?\d+|(?<![\w&])#\d+\b", text)
  assert "generated from benchmarks/RESULTS.md" not in text


@pytest.mark.parametrize("page", PAGES[1:], ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_in_a_docs_code_block_parses(page):
  # The README's are parsed by tests/test_cli_input_checks.py; the same parser for docs/.
  from test_cli_input_checks import _examples, _parse
  lines = [line for block in page.read_text().split("```")[1::2] for line in _examples(block)]
  for line in lines:
    _parse(line)
