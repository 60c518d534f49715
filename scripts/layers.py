#!/usr/bin/env python3
"""The module layers of scripts/layers.txt, for the build and its tests.

  layers.py check SOURCE_ROOT
      Every #include of every C and C++ file of the tree against the rules; each one broken is
      printed as FILE:LINE with the rule it breaks. And every meson.build: a module's targets are
      given its own include root (module_include['<module>'], or that of a module it may
      include), never the whole tree (public_include), which is the tests'. Exit 1 on a problem.
  layers.py roots SOURCE_ROOT OUT_DIR
      Makes, for each module whose rule is not "*", an include root OUT_DIR/<module> that holds
      only the module itself and the modules it may include (symbolic links to their folders), so
      that a target compiled with that root alone cannot include anything else while #include
      keeps its spelling ("ipc/system.h", "gpubroker/calls/protocol.h"). Prints "MODULE DIR" per
      root, DIR relative to OUT_DIR's parent. Run by the root meson.build at configure time.
  layers.py check-headers SOURCE_ROOT BUILD_DIR
      Compiles every header of the tree alone (-fsyntax-only, included twice), with the command
      that BUILD_DIR's compile_commands.json gives a source file that includes it. Exit 1 when a
      header does not compile alone; 77 (skipped) when the build has no compilation database.
  layers.py forbids SOURCE_ROOT BUILD_DIR MODULE HEADER
      Pins one boundary: exit 0 when the rules forbid MODULE to include HEADER (a header of the
      tree, spelled as an #include spells it) and a file of MODULE, compiled with its own flags
      (BUILD_DIR's compile_commands.json), cannot include it; exit 1 when either lets it through,
      so that a rule widened by mistake fails too. 77 (skipped) without a compilation database.
  layers.py self-test
      Checks the checker on a small tree with known faults.
"""

import concurrent.futures
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

RULES = "scripts/layers.txt"
SOURCE_SUFFIXES = (".h", ".hpp", ".cc", ".cpp", ".c", ".cu", ".cuh")
HEADER_SUFFIXES = (".h", ".hpp", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')
SKIP = 77  # meson's "skipped"


class RulesError(Exception):
    pass


@dataclass
class Rule:
    pattern: str       # as written: "ipc", "tools/*"
    allowed: list      # module names, or ["*"]
    line: int
    text: str          # the line without its comment, for messages


@dataclass
class Module:
    name: str          # as its headers are spelled: "ipc", "gpubroker/wire", "tools/bench"
    folder: str        # where its files are, from the source root: "ipc", "include/gpubroker/wire"
    rule: Rule
    allowed: set = field(default_factory=set)  # module names; empty with everything

    @property
    def everything(self):
        return self.rule.allowed == ["*"]


def read_rules(root):
    rules = []
    with open(os.path.join(root, RULES), encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            if ":" not in text:
                raise RulesError(f"{RULES}:{number}: expected 'MODULE: MODULES...', got {text!r}")
            pattern, allowed = text.split(":", 1)
            rules.append(Rule(pattern.strip(), allowed.split(), number, text))
    return rules


def folder_of(root, name):
    """The folder that holds module `name`'s files: NAME/ or include/NAME/, never both."""
    found = [d for d in (name, "include/" + name) if os.path.isdir(os.path.join(root, d))]
    if len(found) > 1:
        raise RulesError(f"module {name} lives in both {found[0]}/ and {found[1]}/")
    return found[0] if found else None


def load_modules(root):
    """The modules of the rules, by name, checked: every name a folder, every allowed name a
    module, and each module allowed what the modules it may include are allowed."""
    modules = {}
    for rule in read_rules(root):
        names = [rule.pattern]
        if rule.pattern.endswith("/*"):
            parent = rule.pattern[:-2]
            base = folder_of(root, parent)
            if base is None:
                raise RulesError(f"{RULES}:{rule.line}: no folder {parent}/")
            names = sorted(parent + "/" + d for d in os.listdir(os.path.join(root, base))
                           if os.path.isdir(os.path.join(root, base, d)) and not d.startswith(".") and d != "__pycache__")
        for name in names:
            folder = folder_of(root, name)
            if folder is None:
                raise RulesError(f"{RULES}:{rule.line}: module {name} has no folder ({name}/ or include/{name}/)")
            if name in modules:
                raise RulesError(f"{RULES}:{rule.line}: module {name} already has a rule (line {modules[name].rule.line})")
            modules[name] = Module(name, folder, rule)
    for module in modules.values():
        if module.everything:
            continue
        for name in module.rule.allowed:
            if name not in modules:
                raise RulesError(f"{RULES}:{module.rule.line}: {module.name} may include {name}, which is no module")
            module.allowed.add(name)
    for module in modules.values():
        if module.everything:
            continue
        for name in sorted(module.allowed):
            other = modules[name]
            if other.everything:
                raise RulesError(f"{RULES}:{module.rule.line}: {module.name} may include {name}, which may include "
                                 "every module")
            missing = sorted(other.allowed - module.allowed - {module.name})
            if missing:
                raise RulesError(f"{RULES}:{module.rule.line}: {module.name} may include {name}, whose headers may "
                                 f"include {', '.join(missing)}, which {module.name} may not")
    return modules


def module_of(modules, path):
    """The module a file belongs to (path from the source root), or None: the one whose folder
    holds it, the innermost where folders nest."""
    best = None
    for module in modules.values():
        if path.startswith(module.folder + "/") and (best is None or len(module.folder) > len(best.folder)):
            best = module
    return best


def is_build_dir(path):
    return os.path.isdir(os.path.join(path, "meson-private")) or os.path.isfile(os.path.join(path, "build.ninja"))


def source_files(root):
    """Every C and C++ file of the tree, from the source root, skipping build directories."""
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d != "__pycache__"
                            and not is_build_dir(os.path.join(directory, d)))
        for name in sorted(files):
            if name.endswith(SOURCE_SUFFIXES):
                found.append(os.path.relpath(os.path.join(directory, name), root).replace(os.sep, "/"))
    return found


LITERAL = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')


def includes_of(root, path):
    """(line, spelling, delimiter) of each #include outside comments. Block comments are followed
    across lines, with string literals blanked first so that a "/*" inside one opens nothing."""
    found = []
    in_comment = False
    with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            code = LITERAL.sub('""', line)
            if in_comment:
                if "*/" not in code:
                    continue
                code = code.split("*/", 1)[1]
                in_comment = False
                starts_in_comment = True
            else:
                starts_in_comment = False
            code = re.sub(r"/\*.*?\*/", " ", code).split("//", 1)[0]
            if "/*" in code:
                in_comment = True
            match = INCLUDE.match(line)
            if match and not starts_in_comment:
                found.append((number, match.group(2), match.group(1)))
    return found


def resolve(root, path, spelling, delimiter):
    """The file of the tree an include names, from the source root, as the compiler finds it with
    the include root of the tree (the including file's folder first for quotes, then the root and
    include/); None when it names none (a system header, or a header generated in the build)."""
    candidates = [os.path.join(root, spelling), os.path.join(root, "include", spelling)]
    if delimiter == '"':
        candidates.insert(0, os.path.join(root, os.path.dirname(path), spelling))
    real_root = os.path.realpath(root)
    for candidate in candidates:
        if os.path.isfile(candidate):
            relative = os.path.relpath(os.path.realpath(candidate), real_root)
            if not relative.startswith(".."):
                return relative.replace(os.sep, "/")
    return None


def include_problems(root):
    modules = load_modules(root)
    problems = []
    for path in source_files(root):
        module = module_of(modules, path)
        if module is None:
            problems.append(f"{path}: belongs to no module of {RULES}: give its folder a rule there")
            continue
        for number, spelling, delimiter in includes_of(root, path):
            target = resolve(root, path, spelling, delimiter)
            if target is None:
                # A bare quoted name is a header configured into the including folder's build
                # directory (sim_test_paths.h); a path must name a file of the tree.
                if delimiter == '"' and "/" in spelling:
                    problems.append(f'{path}:{number}: #include "{spelling}" names no file of the tree')
                continue
            other = module_of(modules, target)
            if other is None:
                problems.append(f'{path}:{number}: #include "{spelling}" reaches {target}, which belongs to no module')
            elif other is not module and not module.everything and other.name not in module.allowed:
                problems.append(f'{path}:{number}: #include "{spelling}": {module.name} may not include {other.name} '
                                f'({RULES}:{module.rule.line}: {module.rule.text})')
    return problems, modules


MESON_ROOT = re.compile(r"\bpublic_include\b|\bwhole_tree\b|module_include\s*\[\s*'([^']*)'\s*\]")


def meson_problems(root, modules):
    """What a meson.build gives its targets to include from: its own module's root or one of the
    modules it may include, or the whole tree where the module may include everything. The root
    meson.build, which makes the roots, is not a module's."""
    problems = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and not is_build_dir(os.path.join(directory, d)))
        if "meson.build" not in files or os.path.samefile(directory, root):
            continue
        path = os.path.relpath(os.path.join(directory, "meson.build"), root).replace(os.sep, "/")
        module = module_of(modules, path)
        with open(os.path.join(root, path), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                for match in MESON_ROOT.finditer(line.split("#", 1)[0]):
                    named = match.group(1)
                    if module is None:
                        problems.append(f"{path}:{number}: {match.group(0)} in a folder of no module of {RULES}")
                    elif module.everything:
                        continue
                    elif named is None:
                        problems.append(f"{path}:{number}: {match.group(0)} is the whole tree, which {module.name} may "
                                        f"not include: use module_include['{module.name}'] ({RULES}:{module.rule.line})")
                    elif named != module.name and named not in module.allowed:
                        problems.append(f"{path}:{number}: {match.group(0)}: {module.name} may not include {named} "
                                        f"({RULES}:{module.rule.line}: {module.rule.text})")
    return problems


def check(root):
    try:
        problems, modules = include_problems(root)
        problems += meson_problems(root, modules)
    except RulesError as error:
        print(f"{error}", file=sys.stderr)
        return 1
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) with the layers of {RULES}")
        return 1
    print(f"every #include of the tree, and every module's include root, keeps to the layers of {RULES} "
          f"({len(modules)} modules)")
    return 0


def make_roots(root, out):
    """See the module docstring (roots)."""
    modules = load_modules(root)
    if os.path.isdir(out):
        shutil.rmtree(out)  # only links and folders of links: rmtree unlinks links, never follows them
    lines = []
    flat_names = {}
    for module in modules.values():
        if module.everything:
            continue
        flat = module.name.replace("/", "-")
        if flat in flat_names:
            raise RulesError(f"modules {flat_names[flat]} and {module.name} would share the include root {flat}")
        flat_names[flat] = module.name
        base = os.path.join(out, flat)
        for name in sorted(module.allowed | {module.name}):
            link = os.path.join(base, name)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            target = os.path.join(os.path.realpath(root), modules[name].folder)
            os.symlink(os.path.relpath(target, os.path.realpath(os.path.dirname(link))), link)
        lines.append(f"{module.name} {os.path.basename(out)}/{flat}")
    print("\n".join(lines))
    return 0


def compile_command(entry, source_root):
    """The compiler arguments of a compilation database entry, without its source, output and
    dependency file: what compiling another file the same way needs."""
    arguments = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    source = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
    kept = []
    skip_next = False
    for argument in arguments:
        if skip_next:
            skip_next = False
        elif argument in ("-o", "-MF", "-MQ", "-MT"):
            skip_next = True
        elif argument in ("-c", "-MD", "-MMD"):
            pass
        elif os.path.realpath(os.path.join(entry["directory"], argument)) == source:
            pass
        else:
            kept.append(argument)
    return kept


def check_headers(root, build):
    database = os.path.join(build, "compile_commands.json")
    if not os.path.isfile(database):
        print(f"SKIP: no {database}: the build has no compilation database to take the flags from")
        return SKIP
    real_root = os.path.realpath(root)
    commands = {}  # source file from the root -> (directory, arguments)
    with open(database, encoding="utf-8") as f:
        for entry in json.load(f):
            source = os.path.relpath(os.path.realpath(os.path.join(entry["directory"], entry["file"])), real_root)
            if source.startswith("..") or not source.endswith((".cc", ".cpp")):
                continue
            commands.setdefault(source.replace(os.sep, "/"), (entry["directory"], compile_command(entry, root)))
    modules = load_modules(root)
    files = source_files(root)
    includers = {}  # header -> the compiled sources that include it directly
    header_includers = {}  # header -> the headers that include it directly
    for path in files:
        compiled = path in commands
        if not compiled and not path.endswith(HEADER_SUFFIXES):
            continue
        for _, spelling, delimiter in includes_of(root, path):
            target = resolve(root, path, spelling, delimiter)
            if target is not None:
                (includers if compiled else header_includers).setdefault(target, []).append(path)

    def users_through_headers(header):
        """The compiled sources that include the header through the fewest other headers (a
        header only other headers include: gpubroker/calls/cuda_calls.h through protocol.h)."""
        seen, layer = {header}, [header]
        while layer:
            layer = sorted({h for current in layer for h in header_includers.get(current, []) if h not in seen})
            seen.update(layer)
            users = sorted({s for h in layer for s in includers.get(h, [])})
            if users:
                return users
        return []

    def candidates(header):
        """Compiled sources whose flags the header is tried with: those that include it (from its
        own folder first), else those that include it through other headers, else those beside
        it; one per distinct command, at most four. The header then compiles with the flags and
        the include root it is used with; a header that needs a definition from the command line
        (tests/cuda_abi/check_support.h) finds the sources that give it."""
        folder = os.path.dirname(header)
        users = sorted(includers.get(header, []), key=lambda s: (os.path.dirname(s) != folder, s))
        if not users:
            users = users_through_headers(header)
        if not users:
            users = sorted(s for s in commands if os.path.dirname(s) == folder)
        chosen, seen = [], set()
        for source in users:
            key = (commands[source][0], tuple(commands[source][1]))
            if key not in seen:
                seen.add(key)
                chosen.append(source)
        return chosen[:4]

    headers = [path for path in files if path.endswith(HEADER_SUFFIXES)]
    work = tempfile.mkdtemp(prefix="gpubroker-headers-")

    def compile_alone(header):
        sources = candidates(header)
        if not sources:
            return header, None, "not compiled by this build (no compiled source includes it or sits beside it)"
        unit = os.path.join(work, header.replace("/", "__") + ".cc")
        with open(unit, "w", encoding="utf-8") as f:
            # By its path, so that nothing but what it includes itself depends on the include
            # paths; twice, because the second inclusion must be a no-op (#pragma once).
            absolute = os.path.join(real_root, header)
            f.write(f'#include "{absolute}"\n#include "{absolute}"\n')
        first_error = None
        for source in sources:
            directory, arguments = commands[source]
            run = subprocess.run(arguments + ["-fsyntax-only", "-fdiagnostics-color=never", unit], cwd=directory,
                                 capture_output=True, text=True)
            if run.returncode == 0:
                return header, True, source
            first_error = first_error or f"with the flags of {source}:\n{run.stderr.strip()}"
        return header, False, first_error

    failed, skipped, passed = [], [], 0
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            for header, ok, detail in pool.map(compile_alone, headers):
                if ok is None:
                    skipped.append((header, detail))
                elif ok:
                    passed += 1
                else:
                    failed.append((header, detail))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for header, detail in skipped:
        print(f"SKIP: {header}: {detail}")
    for header, detail in failed:
        lines = detail.splitlines()
        print(f"FAIL: {header} does not compile alone, " + "\n".join(lines[:40]))
        if len(lines) > 40:
            print(f"  ... {len(lines) - 40} more lines")
    print(f"{passed} headers compile alone, {len(failed)} do not, {len(skipped)} not compiled by this build")
    return 1 if failed else 0


def forbids(root, build, module_name, header):
    modules = load_modules(root)
    if module_name not in modules:
        print(f"{module_name} is no module of {RULES}")
        return 1
    module = modules[module_name]
    target = resolve(root, module.folder + "/x.cc", header, '"')
    if target is None:
        print(f"{header} names no header of the tree")
        return 1
    other = module_of(modules, target)
    if other is None or other is module or module.everything or other.name in module.allowed:
        rule = f"{RULES}:{module.rule.line}: {module.rule.text}"
        print(f"FAIL: the rules let {module_name} include {header} ({rule})")
        return 1
    database = os.path.join(build, "compile_commands.json")
    if not os.path.isfile(database):
        print(f"SKIP: no {database}: the build has no compilation database to take {module_name}'s flags from")
        return SKIP
    real_root = os.path.realpath(root)
    with open(database, encoding="utf-8") as f:
        entries = [e for e in json.load(f)
                   if module_of(modules, os.path.relpath(os.path.realpath(os.path.join(e["directory"], e["file"])),
                                                         real_root).replace(os.sep, "/")) is module]
    if not entries:
        print(f"FAIL: the build compiles no file of {module_name}")
        return 1
    work = tempfile.mkdtemp(prefix="gpubroker-forbids-")
    try:
        unit = os.path.join(work, "includes_it.cc")
        with open(unit, "w", encoding="utf-8") as f:
            f.write(f'#include "{header}"\n')
        entry = entries[0]
        run = subprocess.run(compile_command(entry, root) + ["-fsyntax-only", "-fdiagnostics-color=never", unit],
                             cwd=entry["directory"], capture_output=True, text=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if run.returncode == 0:
        print(f"FAIL: {header} compiles with the flags of {entry['file']}: {module_name}'s include root reaches it")
        return 1
    if "No such file" not in run.stderr:
        print(f"FAIL: including {header} with the flags of {entry['file']} failed otherwise than by not finding it:\n"
              f"{run.stderr.strip()}")
        return 1
    print(f"{module_name} may not include {header} ({other.name}): the rules forbid it and its include root "
          f"does not reach it (flags of {entry['file']})")
    return 0


def self_test():
    """The checker finds what it should on a tree with known faults, and passes a clean one."""
    def tree(files):
        directory = tempfile.mkdtemp(prefix="gpubroker-layers-")
        for path, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(directory, path)), exist_ok=True)
            with open(os.path.join(directory, path), "w", encoding="utf-8") as f:
                f.write(text)
        return directory

    rules = "low:\nwire:\nmid: wire\nhigh: mid wire\ntools/*: mid wire\ntests: *\n"
    clean = {
        RULES: rules,
        "include/wire/w.h": "#pragma once\n",
        "low/l.h": "#pragma once\n#include <vector>\n",
        "mid/m.h": '#pragma once\n#include "wire/w.h"\n// #include "high/h.h" in a comment\n',
        "mid/m.cc": '#include "mid/m.h"\n#include "m.h"\n#include "generated_paths.h"\n/* #include "high/h.h"\n*/\n',
        "high/h.h": '#pragma once\n#include "mid/m.h"\n',
        "tools/a/a.cc": '#include "mid/m.h"\n#include "tools/a/a.h"\n',
        "tools/a/a.h": "#pragma once\n",
        "tests/t.cc": '#include "high/h.h"\n#include "tools/a/a.h"\n',
        "meson.build": "public_include = include_directories('.')\n",
        "mid/meson.build": "lib = library('mid', include_directories: module_include['mid'])  # not public_include\n",
        "high/meson.build": "x = [module_include['high'], module_include['mid']]\n",
        "tests/meson.build": "t = executable('t', include_directories: public_include)\n",
    }
    failures = []
    directory = tree(clean)
    try:
        problems, modules = include_problems(directory)
        problems += meson_problems(directory, modules)
        if problems:
            failures.append("a clean tree was refused: " + "; ".join(problems))
        faults = {
            "low/bad.h": '#include "mid/m.h"\n',                 # a layer up
            "include/wire/bad.h": '  #  include <low/l.h>\n',  # angle brackets, spaced
            "tools/b/b.cc": '#include "tools/a/a.h"\n',         # one tool into another
            "mid/bad.cc": '#include "tests/t.cc"\n#include "mid/missing.h"\n',
            "stray/s.h": "#pragma once\n",
            "low/meson.build": "a = module_include['mid']\nb = public_include\n",
        }
        for path, text in faults.items():
            os.makedirs(os.path.dirname(os.path.join(directory, path)), exist_ok=True)
            with open(os.path.join(directory, path), "w", encoding="utf-8") as f:
                f.write(text)
        problems, modules = include_problems(directory)
        problems += meson_problems(directory, modules)
        expected = [
            f'low/bad.h:1: #include "mid/m.h": low may not include mid ({RULES}:1: low:)',
            f'include/wire/bad.h:1: #include "low/l.h": wire may not include low ({RULES}:2: wire:)',
            f'tools/b/b.cc:1: #include "tools/a/a.h": tools/b may not include tools/a ({RULES}:5: tools/*: mid wire)',
            f'mid/bad.cc:1: #include "tests/t.cc": mid may not include tests ({RULES}:3: mid: wire)',
            'mid/bad.cc:2: #include "mid/missing.h" names no file of the tree',
            f"stray/s.h: belongs to no module of {RULES}: give its folder a rule there",
            f"low/meson.build:1: module_include['mid']: low may not include mid ({RULES}:1: low:)",
            f"low/meson.build:2: public_include is the whole tree, which low may not include: use "
            f"module_include['low'] ({RULES}:1)",
        ]
        for line in expected:
            if line not in problems:
                failures.append("not reported: " + line)
        for line in problems:
            if line not in expected:
                failures.append("reported wrongly: " + line)
    finally:
        shutil.rmtree(directory)
    for broken_rules, message in [("low: nothing\n", "low may include nothing, which is no module"),
                                  ("a:\nb: a\nc: b\n", "c may include b, whose headers may include a"),
                                  ("a:\na:\n", "module a already has a rule")]:
        directory = tree({RULES: broken_rules, "a/x.h": "", "b/x.h": "", "c/x.h": "", "low/x.h": ""})
        try:
            load_modules(directory)
            failures.append(f"rules {broken_rules!r} accepted")
        except RulesError as error:
            if message not in str(error):
                failures.append(f"rules {broken_rules!r}: {error}")
        finally:
            shutil.rmtree(directory)
    for failure in failures:
        print(failure)
    print("the checker " + ("FAILED its self-test" if failures else "finds every planted fault and passes a clean tree"))
    return 1 if failures else 0


def main(argv):
    try:
        if argv[1:2] == ["check"] and len(argv) == 3:
            return check(argv[2])
        if argv[1:2] == ["roots"] and len(argv) == 4:
            return make_roots(argv[2], argv[3])
        if argv[1:2] == ["check-headers"] and len(argv) == 4:
            return check_headers(argv[2], argv[3])
        if argv[1:2] == ["forbids"] and len(argv) == 6:
            return forbids(argv[2], argv[3], argv[4], argv[5])
        if argv[1:2] == ["self-test"] and len(argv) == 2:
            return self_test()
    except RulesError as error:
        print(error, file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
