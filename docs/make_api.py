"""Write docs/api.md, the API reference, from the docstrings and signatures of pfa's public modules.

    python docs/make_api.py           # rewrite docs/api.md
    python docs/make_api.py --check   # exit 1 when docs/api.md differs from what the code says (tests/test_docs.py)

Standard library only (plus importing pfa): it builds offline, and the test keeps the page from going stale. The
page lists the objects named in SECTIONS below, in that order; the flag tables of the training tasks come from their
config dataclasses, the same source as `--help`.
"""

import argparse
import dataclasses
import inspect
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "api.md"

# (title, module, names): one section per entry, objects in the order given.
SECTIONS = [
    ("The module and the neuron", "pfa", ["PFA", "LIF", "TCJA"]),
    ("Attention in any network", "pfa", ["attach", "attention_kinds", "make_attention"]),
    ("", "pfa.attention", ["is_attention"]),
    ("", "pfa.attention.attach", ["Attached", "is_spiking_neuron"]),
    ("Layers fused with the neuron", "pfa.lif", ["SpikingMaxPool2d", "MaxPool2d", "Dropout"]),
    ("Rank advice", "pfa.study.rank", ["rank_advice"]),
    ("Model report", "pfa.study.report", ["model_report", "format_report"]),
    ("Pictures of PFA", "pfa.attention.pictures", ["save_attention_figures", "attention_figure"]),
    ("Training from Python", "pfa.train", ["run_task"]),
    ("", "pfa.tasks", ["get_task", "TaskSpec", "recipe_folder"]),
    ("", "pfa.engine.config", ["parse_config"]),
]

# Config dataclasses whose fields are flags: (heading, module, class name).
FLAG_TABLES = [
    ("Flags of every task", "pfa.engine.config", "TrainConfig"),
    ("Flags of `python -m pfa.train fmnist` (FMNIST/run.py)", "pfa.tasks.fmnist", "FMNISTConfig"),
    ("Flags of `python -m pfa.train cifar` (CIFAR/main.py)", "pfa.tasks.cifar", "CifarConfig"),
    ("Flags of `python -m pfa.train generation` (Generation/main_fsvae.py)", "pfa.tasks.generation",
     "GenerationConfig"),
    ("Flags of `python -m pfa.rank`", "pfa.rank", "RankConfig"),
]

HEADER = """# API reference

Generated from the docstrings by `python docs/make_api.py`; do not edit by hand (`tests/test_docs.py` fails when this
page and the code disagree). Everything below is importable once the package is installed; the names in `pfa`'s
top level (`from pfa import LIF, PFA, TCJA, attach, attention_kinds, make_attention`) are the stable surface.
"""


# Long qualified names in signatures, written as users import them.
SHORT_NAMES = {
    "torch.nn.modules.module.Module": "nn.Module",
    "torch.utils.data.dataset.Dataset": "Dataset",
    "pfa.attention.projected_full.PFA": "PFA",
    "matplotlib.figure.Figure": "Figure",
    "pathlib.Path": "Path",
    "collections.abc.": "",
    "NoneType": "None",
    "~C": "C",
}


def _doc(obj) -> str:
    if not obj.__doc__:
        raise SystemExit(f"{obj.__qualname__} has no docstring: write one, or leave it out of docs/make_api.py")
    return inspect.cleandoc(obj.__doc__)


def _markdown(text: str) -> str:
    """A docstring as Markdown: runs of indented lines (argument lists, examples) become text blocks, so their line
    breaks survive; the rest stays as written (backticks are already Markdown)."""
    out, block = [], []

    def flush():
        while block and not block[-1].strip():
            block.pop()
        if block:
            out.extend(["", "```text", *block, "```", ""])
            block.clear()

    for line in text.splitlines():
        if line.startswith((" ", "\t")) or (block and not line.strip()):
            block.append(line)
        else:
            flush()
            out.append(line)
    flush()
    return "\n".join(out).replace("\n\n\n", "\n\n").strip()


def _own_doc(obj) -> str | None:
    """The object's own docstring, not one inherited from a base class."""
    return inspect.cleandoc(obj.__dict__["__doc__"]) if obj.__dict__.get("__doc__") else None


def _signature(obj) -> str:
    try:
        signature = inspect.signature(obj, eval_str=True)
    except (TypeError, ValueError, NameError):
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError):
            return "(...)"
    text = str(signature)
    for long, short in SHORT_NAMES.items():
        text = text.replace(long, short)
    return text


def _public_methods(cls) -> list[tuple[str, object]]:
    """Methods defined by the class itself (not inherited) with a docstring, public names only."""
    out = []
    for name, member in cls.__dict__.items():
        if name.startswith("_"):
            continue
        function = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
        if inspect.isfunction(function) and function.__doc__:
            out.append((name, function))
    return out


def _render_object(module_name: str, name: str, obj) -> list[str]:
    kind = "class" if inspect.isclass(obj) else "function"
    lines = [f"### `{module_name}.{name}`", ""]
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj):
            fields = ", ".join(f.name for f in dataclasses.fields(obj))
            lines += ["```text", f"class {name}({fields})", "```", ""]
        else:
            lines += ["```text", f"class {name}{_signature(obj)}", "```", ""]
        lines += [_markdown(_own_doc(obj) or _doc(obj)), ""]
        for method_name, method in _public_methods(obj):
            signature = _signature(method).replace("(self, ", "(").replace("(self)", "()")
            lines += [f"#### `{name}.{method_name}`", "", "```text", f"{method_name}{signature}", "```", "",
                      _markdown(_doc(method)), ""]
    else:
        lines += ["```text", f"{kind} {name}{_signature(obj)}", "```", "", _markdown(_doc(obj)), ""]
    return lines


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return f"`{field.default!r}`"
    return "computed" if field.default_factory is not dataclasses.MISSING else "required"


def _same(a: dataclasses.Field, b: dataclasses.Field) -> bool:
    def key(f: dataclasses.Field) -> tuple:
        return f.default, f.default_factory, f.metadata.get("help")

    return key(a) == key(b)


def _flag_table(heading: str, module, cls, base: dict[str, dataclasses.Field]) -> list[str]:
    """The flags of `cls`, less those it shares unchanged with `base` (TrainConfig's fields, shown once)."""
    unused = set(getattr(cls, "UNUSED", ()))
    rows = []
    for field in dataclasses.fields(cls):
        if field.name in unused or (field.name in base and _same(field, base[field.name])):
            continue
        help_text = (field.metadata.get("help") or "").replace("|", "\\|")
        choices = field.metadata.get("choices")
        if choices:
            help_text += f" (one of: {', '.join(map(str, choices))})"
        rows.append(f"| `--{field.name.replace('_', '-')}` | {_default(field)} | {help_text} |")
    intro = _own_doc(cls) or ""
    note = " Besides these, the flags of every task (the first table), some with other defaults listed here." \
        if base else ""
    lines = [f"### {heading}", "", f"`{module.__name__}.{cls.__name__}`: {intro}{note}", ""]
    if getattr(cls, "RECIPES", None) is not None:
        lines += [f"Recipes: `pfa/recipes/{Path(cls.RECIPES).name}/*.yaml` override these defaults (`--help` shows "
                  "their values).", ""]
    return lines + ["| flag | default | meaning |", "|---|---|---|", *rows, ""]


def render() -> str:
    import importlib

    lines = [HEADER]
    lines += ["## Contents", ""]
    titles = [title for title, _, _ in SECTIONS if title] + ["Flags"]
    lines += [f"- [{title}](#{_anchor(title)})" for title in titles] + [""]
    for title, module_name, names in SECTIONS:
        module = importlib.import_module(module_name)
        if title:
            lines += [f"## {title}", ""]
        for name in names:
            lines += _render_object(module_name, name, getattr(module, name))
    lines += ["## Flags", "",
              "Each field of a task's config is a flag (`batch_size` is `--batch-size`), a key of a `--config` YAML "
              "file and a line of the run's `config.yaml`. Values are filled in this order, each overriding the one "
              "before: the defaults below, the task's recipe, `--config FILE.yaml`, the command line.", ""]
    from pfa.engine.config import TrainConfig

    common = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for heading, module_name, class_name in FLAG_TABLES:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
        base = common if issubclass(cls, TrainConfig) and cls is not TrainConfig else {}
        lines += _flag_table(heading, module, cls, base)
    return "\n".join(lines).rstrip() + "\n"


def _anchor(title: str) -> str:
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c == "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python docs/make_api.py", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/api.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is out of date: run python docs/make_api.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
