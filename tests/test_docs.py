"""The documentation runs: every ```python and ```bash block of README.md and docs/, and docs/api.md is current.

Blocks run in page order, each page in its own temporary folder into which the repository's entry folders (FMNIST/,
CIFAR/, Generation/, bench/, src/, env/, run.py) are linked, with this interpreter's bin folder first on PATH (so
`python` is the test's Python) and one OpenMP thread. Training commands (and `pfa.rank`, `pfa.data.samples`) get
small settings: the flags of TINY for their command are added where it does not give them, and `--device` is always
`cpu` (see docs/index.md).

An HTML comment on the line before a block says how to treat it:

    <!-- no-test: REASON -->    not run; reported as a skip with its reason (installs, Docker, clusters, real data)
    <!-- test: slow -->         run only with `pytest -m slow`

Any other block must run and exit 0. Blocks that train Fashion-MNIST (Debian's dataset-fashion-mnist, or no
`--data-dir`) are skipped when that package is missing, and so is the rest of their page. docs/api.md is generated
by docs/make_api.py; the test fails when it disagrees with the docstrings.
"""

import functools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
GENERATED = {ROOT / "docs" / "api.md"}  # checked against its generator instead
LINKED = ("FMNIST", "CIFAR", "Generation", "bench", "src", "env", "run.py")
LANGUAGES = ("python", "bash")
MARKER = re.compile(r"<!--\s*(no-test|test)\s*:\s*(.*?)\s*-->")
MARKER_LINE = re.compile(r"^\s*<!--\s*(?:no-test|test)\s*:.*-->\s*$", re.M)

# Small settings per command: added where the command does not set the flag itself.
TINY = {
    "fmnist": {"--epochs": "1", "--train-samples": "256", "--test-samples": "128", "--width": "8",
               "--batch-size": "64", "--workers": "0"},
    "cifar": {"--epochs": "1", "--train-samples": "16", "--test-samples": "8", "--width": "0.125", "--T": "4",
              "--batch-size": "8", "--workers": "0"},
    "generation": {"--epochs": "1", "--train-samples": "64", "--test-samples": "32", "--batch-size": "32",
                   "--workers": "0", "--fid-every": "0", "--images": "8", "--time-steps": "4"},
    "rank": {"--samples": "4", "--max-rank": "2", "--batch-size": "4"},
    "samples": {"--per-class": "10"},
}
COMMANDS = [  # how a shell line names its command
    (re.compile(r"(^|\s)(-m pfa\.train fmnist|\S*FMNIST/run\.py)(\s|$)"), "fmnist"),
    (re.compile(r"(^|\s)(-m pfa\.train cifar|\S*CIFAR/main\.py)(\s|$)"), "cifar"),
    (re.compile(r"(^|\s)(-m pfa\.train generation|\S*Generation/main_fsvae\.py)(\s|$)"), "generation"),
    (re.compile(r"(^|\s)-m pfa\.rank(\s|$)"), "rank"),
    (re.compile(r"(^|\s)-m pfa\.data\.samples(\s|$)"), "samples"),
]
NO_DEVICE = ("samples",)  # commands without a --device flag
TRAILING_COMMENT = re.compile(r"\s+#\s.*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    marker: tuple[str, str] | None  # ("no-test", reason) or ("test", "slow")

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """The fenced python and bash blocks of a Markdown page, with the marker comment right before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(`{3,})(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1))), len(lines))
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.fullmatch(previous.strip())
        if fence.group(2) in LANGUAGES:
            blocks.append(Block(page, i + 1, fence.group(2), "\n".join(lines[i + 1:end]) + "\n",
                                marker.groups() if marker else None))
        i = end + 1
    return blocks


ALL_BLOCKS = [block for page in PAGES if page not in GENERATED for block in blocks_of(page)]


def command_of(line: str) -> str | None:
    return next((name for pattern, name in COMMANDS if pattern.search(line)), None)


def has_flag(tokens: list[str], flag: str) -> bool:
    return any(t == flag or t.startswith(flag + "=") for t in tokens)


def shrink(line: str) -> str:
    """One logical shell line with the small settings of its command added (unchanged when it runs none)."""
    name = command_of(line)
    if name is None:
        return line
    line = TRAILING_COMMENT.sub("", line)
    tokens = shlex.split(line)
    if name in NO_DEVICE:
        pass
    elif has_flag(tokens, "--device"):
        line = re.sub(r"--device(=|\s+)\S+", "--device cpu", line)
    else:
        line += " --device cpu"
    extra = [f"{flag} {value}" for flag, value in TINY[name].items() if not has_flag(tokens, flag)]
    return " ".join([line, *extra])


def shrink_script(code: str) -> str:
    """A bash block with continuation lines joined and every command shrunk."""
    return "\n".join(shrink(line) for line in code.replace("\\\n", " ").splitlines()) + "\n"


def needs_fashion_mnist(block: Block) -> bool:
    if block.language != "bash":
        return False
    for line in block.code.replace("\\\n", " ").splitlines():
        name = command_of(line)
        tokens = shlex.split(TRAILING_COMMENT.sub("", line)) if name else []
        if has_flag(tokens, "--data-dir") or has_flag(tokens, "--resume") or has_flag(tokens, "--config"):
            continue
        dataset = next((tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == "--dataset"), "fashion")
        if name == "fmnist" or (name == "generation" and dataset == "fashion"):
            return True
    return False


def fashion_mnist_available() -> bool:
    from pfa.data.fashion_mnist import DEBIAN_DIR

    return DEBIAN_DIR.is_dir()


class Pages:
    """One folder per page, shared by its blocks in page order; which blocks ran; pages whose later blocks skip."""

    def __init__(self, tmp_path_factory):
        self.factory, self.folders, self.ran, self.skipped = tmp_path_factory, {}, set(), {}

    def folder(self, page: Path) -> Path:
        if page not in self.folders:
            folder = self.factory.mktemp(page.stem)
            for name in LINKED:
                if (ROOT / name).exists():
                    (folder / name).symlink_to(ROOT / name)
            self.folders[page] = folder
        return self.folders[page]

    def run(self, block: Block) -> None:
        """Run `block`, after the earlier runnable blocks of its page that have not run yet (they may make its
        inputs: a block selected alone, or a slow one under `-m slow`, still finds them)."""
        for earlier in ALL_BLOCKS:
            if earlier.page == block.page and earlier.line < block.line and earlier.id not in self.ran \
                    and not (earlier.marker and earlier.marker[0] == "no-test"):
                self._execute(earlier, f" (an earlier block, run first for {block.id})")
        self._execute(block, "")

    def _execute(self, block: Block, note: str) -> None:
        folder = self.folder(block.page)
        if block.language == "python":
            script = folder / f"block_{block.line}.py"
            script.write_text(block.code, encoding="utf-8")
            command = [sys.executable, script.name]
        else:
            command = ["bash", "-euo", "pipefail", "-c", shrink_script(block.code)]
        result = subprocess.run(command, cwd=folder, env=environment(), capture_output=True, text=True, timeout=900)
        self.ran.add(block.id)
        ran = command[-1] if block.language == "bash" else block.code
        assert result.returncode == 0, (
            f"{block.id}{note} exited with {result.returncode}\n--- ran:\n{ran}"
            f"\n--- stdout (end):\n{result.stdout[-3000:]}\n--- stderr (end):\n{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    return Pages(tmp_path_factory)


def environment() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


PARAMS = [pytest.param(block, id=block.id, marks=[pytest.mark.slow] if block.marker == ("test", "slow") else [])
          for block in ALL_BLOCKS]


@pytest.mark.parametrize("block", PARAMS)
def test_example_runs(block: Block, pages: Pages):
    if block.marker and block.marker[0] == "no-test":
        pytest.skip(f"{block.id} not run: {block.marker[1]}")
    if block.page in pages.skipped:
        pytest.skip(f"{block.id}: an earlier block of this page was skipped: {pages.skipped[block.page]}")
    if any(needs_fashion_mnist(b) for b in ALL_BLOCKS if b.page == block.page and b.line <= block.line) \
            and not fashion_mnist_available():
        pages.skipped[block.page] = "no Fashion-MNIST (Debian's dataset-fashion-mnist)"
        pytest.skip(f"{block.id}: {pages.skipped[block.page]}")
    pages.run(block)


def test_markers_give_reasons():
    """Every block that is not run says why, and every marker stands before a block this test knows."""
    for block in ALL_BLOCKS:
        if block.marker is not None:
            kind, text = block.marker
            assert text, f"{block.id}: a {kind} marker needs a reason"
            assert kind == "no-test" or text == "slow", f"{block.id}: unknown marker <!-- test: {text} -->"
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        markers = len(MARKER_LINE.findall(text))
        tagged = sum(1 for block in ALL_BLOCKS if block.page == page and block.marker)
        assert markers == tagged, f"{page.relative_to(ROOT)}: a marker comment is not right before a python/bash block"


def test_shrink_adds_small_settings():
    line = "OMP_NUM_THREADS=1 python FMNIST/run.py --quick --epochs 5 --device cuda  # a comment"
    assert shrink(line) == ("OMP_NUM_THREADS=1 python FMNIST/run.py --quick --epochs 5 --device cpu "
                            "--train-samples 256 --test-samples 128 --width 8 --batch-size 64 --workers 0")
    assert shrink("ls runs  # not a training command") == "ls runs  # not a training command"
    assert command_of("torchrun --standalone --nproc_per_node 2 CIFAR/main.py --dataset cifar10") == "cifar"
    assert command_of("python -m pfa.train generation --dataset mnist") == "generation"


def test_api_reference_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "make_api.py"), "--check"], cwd=ROOT,
                            env=environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr + "\nrun: python docs/make_api.py"


def _without_fenced_code(page: Path) -> str:
    return re.sub(r"^(`{3,}).*?^\1", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)


@functools.cache
def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", _without_fenced_code(page), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_links_resolve():
    """Relative links of README.md and docs/ point at files that exist, and at headings those files have."""
    for page in PAGES:
        text = re.sub(r"`[^`\n]*`", "", _without_fenced_code(page))  # inline code too
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            where = page.parent / target if target else page
            assert where.exists(), f"{page.relative_to(ROOT)} links to missing {target}"
            if anchor and where.suffix == ".md":
                assert anchor in _anchors(where), f"{page.relative_to(ROOT)} links to missing heading {target}#{anchor}"



def test_the_documented_dvs_gesture_recipes_differ_as_documented():
    """The reference's main.py recipe (T 12, rank 8), its class defaults (T 20, rank 32) and ours, unaugmented."""
    from pfa import PFA
    from pfa.engine.config import parse_config
    from pfa.tasks.cifar import CifarConfig, Data, build_model

    recipes = ROOT / "src" / "pfa" / "recipes" / "cifar"
    for name, T, ranks in (("dvsgesture-reference-main", 12, [8, 8, 8, 8, 64]),
                           ("dvsgesture-reference", 20, [32, 32, 32, 32, 64]),
                           ("dvsgesture", 20, [32] * 5)):
        cfg = parse_config(CifarConfig, ["--config", str(recipes / f"{name}.yaml"), "--device", "cpu"])
        model, _ = build_model(cfg, Data(None, None, 11, 2, (128, 128), images=False))
        assert (cfg.T, [m.rank for m in model.modules() if isinstance(m, PFA)], cfg.augment) == (T, ranks, "none")
