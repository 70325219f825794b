"""Guarding test cells (trusted side, driven from the executor): nothing a submission does in its kernel may change
how a test cell runs or what it scores.

Before the first cell, :class:`Guard` installs a small check into the kernel (sent as text: the box never sees this
package) while no learner code has run yet. It snapshots the kernel's execution machinery: IPython's input and AST
transformers, event callbacks, custom exception handlers, display and exception hooks, display formatters, trace and
profile functions, import hooks, the built-ins, the methods that run a cell, and the ``lrlab`` modules the tests
call. Before and after every test cell the executor runs the check through ``user_expressions`` (evaluated without
IPython's transformers); it restores what it can and reports what had changed, signed with a per-run key so that a
replaced check is noticed. :func:`credit_outputs` keeps a test cell's credit a matter of its own run ending without
error: an ``execute_result`` the cell's own last expression did not produce (nbgrader reads a number there as
partial credit) is dropped. :func:`scan` flags submitted code that reaches for that machinery, for manual review.
:class:`RestoreWholeCells` (a sanitize step) gives locked cells back all their metadata and the notebook its kernel.

Residual limit: the tests share the kernel with the learner's code, so code that finds the guard itself (through
``gc``, frames or ``ctypes``) can still fool it; :func:`scan` flags such code for a person to read.

Imports: :mod:`~lrlab.course.grading.gradebook`, nbformat, nbgrader.
"""

from __future__ import annotations

import ast
import builtins
import copy
import hashlib
import hmac
import json
import secrets
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor

from lrlab.course.grading.gradebook import coursedir, gradebook_cells, source_notebook

#: The error name a test cell gets when the guard withholds its credit.
GUARD_ERROR = "GraderGuard"

# Runs in the kernel (exec'd from a user expression, before any learner code). Defines one function, stored in
# builtins under a random name, that checks and restores the machinery and answers json [signature, findings].
KERNEL_SOURCE = r'''
def _lrlab_guard_install(key, name, lrlab_dir):
    import builtins, hashlib, hmac, importlib, json, os, sys, threading, warnings
    from IPython import get_ipython

    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    missing = object()
    roots = sorted({os.path.realpath(p) for p in [sys.prefix, sys.base_prefix, sys.exec_prefix, lrlab_dir]
                    + [p for p in sys.path if p and os.path.isabs(p)] if p} - {os.path.realpath(os.getcwd())})
    cwd = os.path.realpath(os.getcwd())
    roots = [r for r in roots if not (r + os.sep).startswith(cwd + os.sep)]

    def same(a, b):
        if a is b:
            return True
        try:
            return type(a) is type(b) and hasattr(a, "__self__") and bool(a == b)
        except Exception:
            return False

    def trusted_file(path):
        if not isinstance(path, str):
            return False
        path = os.path.realpath(path)
        return any(path.startswith(r + os.sep) for r in roots)

    def trusted(obj):
        """A hook some installed library (not the submission) put there."""
        fn = getattr(obj, "__func__", obj)
        glb = getattr(fn, "__globals__", None)
        if isinstance(glb, dict):
            mod = sys.modules.get(glb.get("__name__"))
            return (mod is not None and vars(mod) is glb and trusted_file(glb.get("__file__"))
                    and trusted_file(fn.__code__.co_filename))
        cls = obj if isinstance(obj, type) else type(obj)
        mod = sys.modules.get(getattr(cls, "__module__", None))
        return (mod is not None and getattr(mod, cls.__qualname__.split(".")[0], None) is not None
                and trusted_file(getattr(mod, "__file__", None)))

    slots = [
        ("sys.displayhook", sys, "displayhook"), ("sys.excepthook", sys, "excepthook"),
        ("sys.breakpointhook", sys, "breakpointhook"),
        ("the display hook", shell, "displayhook"), ("the display trap", shell, "display_trap"),
        ("the display publisher", shell, "display_pub"), ("the display formatter", shell, "display_formatter"),
        ("the input transformer manager", shell, "input_transformer_manager"),
        ("the custom exception handler", shell, "custom_exceptions"), ("CustomTB", shell, "CustomTB"),
        ("the traceback formatter", shell, "InteractiveTB"), ("the compiler", shell, "compile"),
        ("the event manager", shell, "events"), ("the builtin trap", shell, "builtin_trap"),
        ("the user namespace's builtins", shell.user_module, "__builtins__"),
    ]
    if shell.display_trap is not None:
        slots.append(("the display trap's hook", shell.display_trap, "hook"))
    for fmt in shell.display_formatter.formatters.values():
        slots.append((f"the {fmt.format_type} formatter's switch", fmt, "enabled"))
    saved_slots = [(label, obj, attr, getattr(obj, attr, missing)) for label, obj, attr in slots]
    saved_formatters = dict(shell.display_formatter.formatters)

    tm = shell.input_transformer_manager
    lists = [("IPython's input_transformers_post", shell, "input_transformers_post"),
             ("IPython's ast_transformers", shell, "ast_transformers"),
             ("IPython's input_transformers_cleanup", tm, "cleanup_transforms"),
             ("IPython's line transforms", tm, "line_transforms"),
             ("IPython's token transformers", tm, "token_transformers")]
    saved_lists = [(label, obj, attr, list(getattr(obj, attr))) for label, obj, attr in lists]
    saved_events = {event: list(cbs) for event, cbs in shell.events.callbacks.items()}
    saved_meta_path, saved_path_hooks = list(sys.meta_path), list(sys.path_hooks)
    saved_builtins = dict(vars(builtins))
    trap_names = {"exit", "quit", "get_ipython", "display", "__IPYTHON__", "_", "__", "___"}
    methods = {shell: ["run_cell", "run_cell_async", "run_ast_nodes", "run_code", "transform_cell",
                       "transform_ast", "showtraceback", "_showtraceback", "showsyntaxerror", "ev", "ex",
                       "user_expressions", "should_run_async", "get_exception_only"],
               kernel: ["do_execute", "execute_request", "_publish_execute_input", "send_response"]}
    def lookup(obj, attr):
        for klass in type(obj).__mro__:
            if attr in vars(klass):
                return klass, vars(klass)[attr]
        return None, missing

    saved_methods = []
    for obj, names in methods.items():
        if obj is None:
            continue
        for attr in names:
            owner, value = lookup(obj, attr)
            if owner is not None:
                saved_methods.append((obj, attr, attr in vars(obj), owner, value))
    saved_modules = {n: m for n, m in sys.modules.items() if n.split(".")[0] in ("lrlab", "IPython", "ipykernel")}
    saved_sys_funcs = {n: getattr(sys, n) for n in ("settrace", "setprofile", "gettrace", "getprofile")}
    lrlab_root = os.path.realpath(lrlab_dir) if lrlab_dir else None
    if "" in sys.path:  # the working folder goes last: a file there never shadows an installed module
        sys.path.remove("")
    for entry in (os.getcwd(), cwd):
        while entry in sys.path:
            sys.path.remove(entry)
    sys.path.append(os.getcwd())
    saved_path_list, saved_path = sys.path, list(sys.path)

    def show_warning(message, category, filename, lineno, file=None, line=None):
        # honest warnings go to stdout: nbgrader scores any stderr in a test cell 0
        try:
            sys.stdout.write(warnings.formatwarning(message, category, filename, lineno, line))
        except Exception:
            pass
    warnings.showwarning = show_warning

    def check(challenge, names=()):
        found = []
        for label, obj, attr, value in saved_slots:
            if not same(getattr(obj, attr, missing), value):
                found.append(f"{label} was replaced")
                try:
                    setattr(obj, attr, value)
                except Exception:
                    pass
        formatters = shell.display_formatter.formatters
        if dict(formatters) != saved_formatters:
            found.append("the display formatters were replaced")
            formatters.clear()
            formatters.update(saved_formatters)
        for label, obj, attr, value in saved_lists:
            now = getattr(obj, attr, None)
            if not isinstance(now, list) or len(now) != len(value) or any(a is not b for a, b in zip(now, value)):
                found.append(f"{label} were changed")
                setattr(obj, attr, list(value))
        callbacks = shell.events.callbacks
        for event in set(callbacks) | set(saved_events):
            now, before = list(callbacks.get(event, [])), saved_events.get(event, [])
            lost = [cb for cb in before if not any(cb is c for c in now)]
            added = [cb for cb in now if not any(cb is c for c in before)]
            bad = [cb for cb in added if not trusted(cb)]
            if lost or bad:
                found.append(f"IPython's '{event}' event callbacks were changed")
                callbacks[event] = list(before) + [cb for cb in added if trusted(cb)]
        for label, now, before, owner in (("sys.meta_path", sys.meta_path, saved_meta_path, "meta_path"),
                                         ("sys.path_hooks", sys.path_hooks, saved_path_hooks, "path_hooks")):
            lost = [f for f in before if not any(f is g for g in now)]
            added = [f for f in now if not any(f is g for g in before)]
            bad = [f for f in added if not trusted(f)]
            if lost or bad or not isinstance(now, list):
                found.append(f"the import hooks in {label} were changed")
                setattr(sys, owner, list(before) + [f for f in added if trusted(f)])
                sys.path_importer_cache.clear()
        for attr, value in saved_sys_funcs.items():
            if getattr(sys, attr) is not value:
                found.append(f"sys.{attr} was replaced")
                setattr(sys, attr, value)
        if sys.gettrace() is not None or threading._trace_hook is not None:
            found.append("a trace function was set (sys.settrace)")
            sys.settrace(None)
            threading.settrace(None)
        if sys.getprofile() is not None or threading._profile_hook is not None:
            found.append("a profile function was set (sys.setprofile)")
            sys.setprofile(None)
            threading.setprofile(None)
        for obj, attr, own, owner, value in saved_methods:
            if (attr in vars(obj)) != own or lookup(obj, attr) != (owner, value):
                found.append(f"{type(obj).__name__}.{attr} was replaced")
                if not own and attr in vars(obj):
                    delattr(obj, attr)
                for klass in type(obj).__mro__:
                    if klass is owner:
                        break
                    if attr in vars(klass):
                        delattr(klass, attr)
                setattr(owner, attr, value)
        if sys.path is not saved_path_list or sys.path[:len(saved_path)] != saved_path:
            extra = [p for p in sys.path if p not in saved_path] if isinstance(sys.path, list) else []
            sys.path = saved_path_list
            sys.path[:] = saved_path + extra
        for bname, value in saved_builtins.items():
            if bname in trap_names:
                continue
            if not same(vars(builtins).get(bname, missing), value):
                found.append(f"the built-in '{bname}' was replaced")
                setattr(builtins, bname, value)
        for bname in names:
            value = shell.user_ns.get(bname, missing)
            if value is not missing and callable(value) and not same(value, saved_builtins.get(bname, missing)):
                found.append(f"the built-in '{bname}' that the tests use was redefined")
                del shell.user_ns[bname]
        for mname, module in list(sys.modules.items()):
            if mname.split(".")[0] != "lrlab" and mname not in saved_modules:
                continue
            before = saved_modules.get(mname, missing)
            if before is not missing:
                if module is not before:
                    found.append(f"the module {mname} was replaced")
                    sys.modules[mname] = before
                continue
            file = getattr(module, "__file__", None)
            ok = lrlab_root is not None and isinstance(file, str) and \
                os.path.realpath(file).startswith(lrlab_root + os.sep)
            if ok:
                for attr, value in list(vars(module).items()):
                    fn = getattr(value, "__func__", value)
                    code = getattr(fn, "__code__", None)
                    if code is not None and getattr(fn, "__module__", None) == mname and \
                            not trusted_file(code.co_filename):
                        ok = False
                        break
            if not ok:
                found.append(f"the module {mname} (which the tests rely on) was replaced or changed")
                for other in [n for n in sys.modules if n == mname or n.startswith(mname + ".")]:
                    del sys.modules[other]
                parent, _, child = mname.rpartition(".")
                try:
                    fresh = importlib.import_module(mname)
                    if parent and parent in sys.modules:
                        setattr(sys.modules[parent], child, fresh)
                except Exception:
                    pass
        text = json.dumps(found)
        sign = hmac.new(key.encode(), (challenge + text).encode(), hashlib.sha256).hexdigest()
        return json.dumps([sign, text])

    setattr(builtins, name, check)
'''


class Guard:
    """The grader's side of the in-kernel guard of one notebook run (a fresh key and name each time)."""

    def __init__(self, lrlab_dir: str | None = None) -> None:
        self.key = secrets.token_hex(16)
        self.name = "_lrlab_guard_" + secrets.token_hex(8)
        self.lrlab_dir = lrlab_dir

    def install_expression(self) -> str:
        """A user expression that installs the check (sent before any learner code runs)."""
        call = f"_lrlab_guard_install({self.key!r}, {self.name!r}, {self.lrlab_dir!r})"
        return f"exec({(KERNEL_SOURCE + call)!r}, {{'__name__': '_lrlab_guard'}})"

    def check_expression(self, challenge: str, names: list[str]) -> str:
        """A user expression that runs the check (restoring what it can) and answers with the findings."""
        return f"{self.name}({challenge!r}, {sorted(names)!r})"

    def verdict(self, reply: dict | None, challenge: str) -> list[str]:
        """What the check found, from the kernel's ``user_expressions`` answer; a missing or unsigned answer
        means the check itself was removed or replaced."""
        if not isinstance(reply, dict) or reply.get("status") != "ok":
            return ["the grader's check in the kernel was removed or broken"]
        try:
            sign, text = json.loads(ast.literal_eval(reply["data"]["text/plain"]))
            good = hmac.new(self.key.encode(), (challenge + text).encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(str(sign), good):
                return ["the grader's check in the kernel was replaced"]
            found = json.loads(text)
            return [str(f) for f in found]
        except Exception:
            return ["the grader's check in the kernel answered something it never says"]


def new_challenge() -> str:
    return secrets.token_hex(12)


def is_test_cell(cell: NotebookNode) -> bool:
    """An autograded test cell (code, graded, not an answer)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def builtin_names(source: str) -> list[str]:
    """The built-in names a cell's code reads (so the guard can check the notebook did not redefine them)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return sorted(n for n in names if hasattr(builtins, n) and not n.startswith("_"))


def _ends_with_expression(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return bool(tree.body) and isinstance(tree.body[-1], ast.Expr) and not source.rstrip().endswith(";")


def credit_outputs(cell: NotebookNode) -> bool:
    """Drop from an executed test cell every ``execute_result`` its own last expression did not produce.

    nbgrader reads a number in a test cell's ``execute_result`` as partial credit; only the trusted source of the
    cell may produce one: its last line an expression that ran (so not when the cell raised an error), and only one.
    Returns whether anything was dropped."""
    outputs = cell.get("outputs", [])
    results = [o for o in outputs if o.get("output_type") == "execute_result"]
    failed = any(o.get("output_type") == "error" for o in outputs)
    keep = results[-1:] if _ends_with_expression(cell.source) and not failed else []
    if len(results) == len(keep):
        return False
    cell.outputs = [o for o in cell.outputs if o.get("output_type") != "execute_result" or any(o is k for k in keep)]
    return True


def stderr_only_loss(cell: NotebookNode) -> str | None:
    """When a test cell ran without error but wrote to stderr (which nbgrader scores 0), its first stderr line."""
    outputs = cell.get("outputs", [])
    if any(o.get("output_type") == "error" for o in outputs):
        return None
    for o in outputs:
        if o.get("output_type") == "stream" and o.get("name") == "stderr":
            text = "".join(o.get("text", "")) if isinstance(o.get("text"), list) else str(o.get("text", ""))
            lines = [line for line in text.splitlines() if line.strip()]
            return (lines[0] if lines else "")[:200]
    return None


def withhold(cell: NotebookNode, why: str) -> None:
    """Give a test cell an error output, so that nbgrader scores it 0, saying why."""
    evalue = f"not credited: {why}"
    cell.outputs.append(nbformat.v4.new_output("error", ename=GUARD_ERROR, evalue=evalue,
                                               traceback=[f"{GUARD_ERROR}: {evalue}"]))


#: What the static scan looks for: attribute and module names of the kernel's execution machinery.
_MACHINERY_ATTRS = {
    "input_transformers_cleanup", "input_transformers_post", "input_transformer_manager", "ast_transformers",
    "events", "set_custom_exc", "custom_exceptions", "CustomTB", "InteractiveTB", "displayhook", "excepthook",
    "display_formatter", "display_pub", "display_trap", "settrace", "setprofile", "meta_path", "path_hooks",
    "path_importer_cache", "_getframe", "f_back", "f_globals", "f_locals", "tb_frame", "register_transformer",
    "run_cell", "run_ast_nodes", "run_code", "transform_cell", "do_execute", "showtraceback", "user_expressions",
    "__code__", "__globals__", "__builtins__", "get_objects", "get_referrers", "showwarning",
}
_MACHINERY_MODULES = {"builtins", "gc", "ctypes", "_ctypes", "inspect", "ipykernel", "importlib", "site", "zmq",
                      "jupyter_client", "codeop", "IPython.core", "IPython.terminal", "IPython.utils"}
_MACHINERY_NAMES = {"get_ipython", "__builtins__", "__import__"}


def _module_hit(name: str) -> bool:
    return name == "IPython" or any(name == m or name.startswith(m + ".") for m in _MACHINERY_MODULES)


def scan(nb: NotebookNode) -> list[str]:
    """Reasons to review a submission by hand: submitted code (unlocked code cells) that reaches for the kernel's
    execution machinery (IPython's hooks, trace functions, import hooks, built-ins, frames, ``gc``, ``ctypes``)."""
    hits: list[str] = []
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "code" or meta.get("locked"):
            continue
        try:
            tree = ast.parse(_strip_magics(cell.source))
        except SyntaxError:
            continue
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in _MACHINERY_ATTRS:
                found.add(f".{node.attr}")
            elif isinstance(node, ast.Attribute) and node.attr == "modules" and \
                    isinstance(node.value, ast.Name) and node.value.id == "sys":
                found.add("sys.modules")
            elif isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found |= {m for m in mods if _module_hit(m)}
            elif isinstance(node, ast.Name) and node.id in _MACHINERY_NAMES:
                found.add(node.id)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    node.value in _MACHINERY_ATTRS | _MACHINERY_NAMES:
                found.add(repr(node.value))
        if found:
            grade_id = meta.get("grade_id")
            where = f"cell '{grade_id}'" if grade_id else f"cell {index + 1}"
            hits.append(f"flagged for manual review: {where} reaches for the kernel's machinery "
                        f"({', '.join(sorted(found))})")
    return hits


def _strip_magics(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))


# -- sanitize step: locked cells whole, and the kernel -------------------------------------------------------------

def _trusted_notebook(config, assignment: str, notebook: str) -> NotebookNode | None:
    folders = coursedir(config)
    release = Path(folders.format_path(folders.release_directory, ".", assignment)) / f"{notebook}.ipynb"
    for path in (release, source_notebook(config, assignment, notebook)):
        try:
            return nbformat.read(str(path), as_version=4)
        except Exception:  # a missing or unreadable copy: try the next one
            continue
    return None


#: Cell metadata that only the notebook editor reads: restored, but a change is no reason worth reporting.
UI_METADATA = frozenset({"nbgrader", "deletable", "editable", "collapsed", "scrolled", "jupyter", "execution",
                         "trusted", "slideshow", "id"})
#: Notebook metadata that selects or describes the kernel: always the instructor's.
KERNEL_METADATA = ("kernelspec", "language_info")


class RestoreWholeCells(NbGraderPreprocessor):
    """Give every locked cell its whole metadata back (tags such as ``skip-execution`` or ``raises-exception``,
    ``jupyter``, ``editable``, ...) and its type, from the released notebook (else the source), and the notebook
    the instructor's kernel metadata. Sources come from the gradebook (nbgrader's ``OverwriteCells``), and the
    nbgrader metadata from :class:`~lrlab.course.grading.sanitize.RepairGradeMetadata`; this does the rest, so
    nothing in a submission changes how a test cell executes. Runs after ``RestoreLockedCells``."""

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook

        info = resources["nbgrader"]
        reasons = resources.setdefault("lrlab", {}).setdefault("reasons", [])
        with Gradebook(info["db_url"]) as gb:
            known = gradebook_cells(gb, info["notebook"], info["assignment"])
        trusted = _trusted_notebook(self.config, info["assignment"], info["notebook"])
        if trusted is None:
            return nb, resources
        cells = {c.metadata["nbgrader"]["grade_id"]: c for c in trusted.cells
                 if isinstance(c.get("metadata", {}).get("nbgrader"), dict) and "grade_id" in c.metadata["nbgrader"]}
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader")
            grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
            if grade_id not in known or not known[grade_id]["locked"] or grade_id not in cells:
                continue
            original = cells[grade_id]
            wanted = copy.deepcopy(original.metadata)
            wanted["nbgrader"] = meta
            changed = [k for k in sorted(set(wanted) | set(cell.metadata))
                       if k not in UI_METADATA and wanted.get(k) != cell.metadata.get(k)]
            if changed or cell.cell_type != original.cell_type:
                reasons.append(f"the metadata of locked cell '{grade_id}' was changed "
                               f"({', '.join(changed) or 'cell_type'}); restored")
            cell.metadata = NotebookNode(wanted)
            if cell.cell_type != original.cell_type:
                cell.cell_type = original.cell_type
                if original.cell_type != "code":
                    cell.pop("outputs", None)
                    cell.pop("execution_count", None)
                else:
                    cell.outputs, cell.execution_count = [], None
            cell.pop("attachments", None)
        for key in KERNEL_METADATA:
            if nb.metadata.get(key) != trusted.metadata.get(key):
                if key == "kernelspec":
                    reasons.append("the notebook's kernel was changed; restored")
                if key in trusted.metadata:
                    nb.metadata[key] = copy.deepcopy(trusted.metadata[key])
                else:
                    nb.metadata.pop(key, None)
        return nb, resources
