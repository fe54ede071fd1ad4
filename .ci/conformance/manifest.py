#!/usr/bin/env python3
"""Conformance manifest: every normative statement of MQTT 3.1.1 and 5.0 -> the tests citing it.

A test cites a statement by naming its id (`MQTT-3.3.1-2`) in its name, in the comments just
above it, or in the first comment line of its body. A citation counts for the version named right after the
id ("3.1.1", "5.0", "v5", "v3"/"v311"), before the next id; ids listed without one take the
next version named on the line (`[MQTT-A], [MQTT-B] (5.0)`), so `[MQTT-X] (3.1.1) / [MQTT-Y]
(5.0)` credits X to 3.1.1 and Y to 5.0 only. A version followed by a section number ("5.0
3.1.2.7") names a section, not the id's version. An id whose line names no version after it
takes, in order: the versions the test's comments give the same id (for ids in test names), the
version in the test's name (`..._v5`), the file's ("//! Statement ids cited here are those of
MQTT 5.0"), else both versions.

Statements no test of ours can check (a "may", a rule for a feature we do not have, a rule
only on a peer's insides) are listed in `untestable.tsv` (`ID<TAB>version<TAB>reason`) and shown
apart: the coverage line counts the testable statements.

Usage: manifest.py [--check] [--out FILE]
  writes the manifest (markdown) to FILE (default: .ci/conformance/manifest.md) and prints the
  coverage per version; with --check, exits 1 if a test cites an id that no standard has, or if
  untestable.tsv names an id its version does not have.
"""

import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
ID = re.compile(r"MQTT-(\d+(?:\.\d+)*-\d+)")
ALIASES = {"4.2-1": "4.2.0-1", "3-8.3-4": "3.8.3-4", "3.1.2.7": "3.1.2-7"}
TEST_ATTR = re.compile(r"^\s*#\[(?:tokio::)?test\b|^\s*fn\s+\w+\s*\(.*\)\s*(?:->.*)?\{?\s*$")


def load(version_file):
    ids = {}
    for line in (HERE / version_file).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        sid, text = line.split("\t", 1)
        ids[sid.removeprefix("MQTT-")] = text
    return ids


def load_untestable(standards):
    """{version: {id: reason}} from untestable.tsv, and the errors in it."""
    untestable = {v: {} for v in standards}
    errors = []
    path = HERE / "untestable.tsv"
    if not path.exists():
        return untestable, errors
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not parts[2].strip():
            errors.append(f"untestable.tsv:{n}: expected ID<TAB>version<TAB>reason")
            continue
        sid, version, reason = parts
        sid = sid.removeprefix("MQTT-")
        if version not in standards:
            errors.append(f"untestable.tsv:{n}: version {version!r} (3.1.1 or 5.0)")
        elif sid not in standards[version]:
            errors.append(f"untestable.tsv:{n}: MQTT {version} has no MQTT-{sid}")
        else:
            untestable[version][sid] = reason.strip()
    return untestable, errors


SECTION_REF = re.compile(r"(3\.1\.1|5\.0)\s+\d+(\.\d+)+")


def markers(text):
    """The versions `text` names (possibly none); "5.0 3.1.2.7" is a section of 5.0, not a
    version for the id before it."""
    l = SECTION_REF.sub("", text.lower())
    v3 = "3.1.1" in l or "v3" in l or "v311" in l or "3.1.x" in l
    v5 = "5.0" in l or "v5" in l or "mqtt 5" in l
    return ({"3.1.1"} if v3 else set()) | ({"5.0"} if v5 else set())


SEPARATOR = re.compile(r"^[\s,;/\]\[()]*(?:and|or|to|\.\.)?[\s,;/\]\[()]*$", re.IGNORECASE)


CONTINUED = "\x00"


def citations(text, fallback, limit=None):
    """(raw id, versions) for each id in `text`: the versions named after it, before the next
    id and before the end of the clause (a colon or a full stop); only ids before `limit` count;
    for an id followed only by a separator (`[MQTT-A], [MQTT-B] (5.0)`),
    those of the next id; else `fallback`."""
    normalised = re.sub(r"mqtt_(\d+)_(\d+)_(\d+)_(\d+)", r"MQTT-\1.\2.\3-\4", text)
    found = list(ID.finditer(normalised))
    segments = [
        normalised[m.end():found[i + 1].start() if i + 1 < len(found) else len(normalised)]
        for i, m in enumerate(found)
    ]
    versions = [None] * len(found)
    for i in reversed(range(len(found))):
        head = markers(re.split(r":|\.\s", segments[i], maxsplit=1)[0])
        if head:
            versions[i] = head
        elif i + 1 < len(found) and SEPARATOR.match(segments[i]):
            versions[i] = versions[i + 1]
    return [
        (m.group(1), versions[i] or fallback)
        for i, m in enumerate(found)
        if limit is None or m.start() < limit
    ]


def comment_text(line):
    """A comment line without its `//`, `///` or `//!`; an attribute line (between the
    comments above a test and its body) ends a clause."""
    if line.strip().startswith("#["):
        return "."
    return re.sub(r"^\s*//[/!]?", "", line)


def versions_of(line):
    l = line.lower()
    v3 = "3.1.1" in l or "v3" in l or "v311" in l or "3.1.x" in l
    v5 = "5.0" in l or "v5" in l or "mqtt 5" in l
    if not v3 and not v5:
        return {"3.1.1", "5.0"}
    return ({"3.1.1"} if v3 else set()) | ({"5.0"} if v5 else set())


def tests_in(path):
    """Yields (test name, the lines that belong to its citation: the signature, then the
    comments above it and the first comment line of the body, in reading order; then the rest
    of that comment, each line starting with CONTINUED)."""
    lines = path.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^\s*(?:pub\s+)?(?:async\s+)?fn\s+(\w+)\s*\(", line)
        if not m:
            continue
        # A test: #[test] / #[tokio::test] above, or inside a proptest! block (heuristic:
        # preceded by a doc comment or attribute line mentioning test/proptest).
        above = []
        j = i - 1
        is_test = False
        while j >= 0 and (lines[j].strip().startswith(("#[", "//", "///")) or not lines[j].strip()):
            if re.search(r"#\[(tokio::)?test|#\[test\]|proptest", lines[j]):
                is_test = True
            if lines[j].strip():
                above.append(lines[j])
            j -= 1
        if not is_test:
            # Functions inside `proptest! { ... }` have no #[test] attribute.
            window = "\n".join(lines[max(0, i - 40):i])
            is_test = "proptest!" in window and "#[test]" not in lines[i - 1]
        if not is_test:
            continue
        # The first comment line of the body cites; the lines continuing that comment only
        # say which version its ids are (marked CONTINUED).
        body = []
        for k in range(i + 1, min(i + 6, len(lines))):
            if lines[k].strip().startswith("//"):
                body.append(lines[k])
                k += 1
                while k < len(lines) and lines[k].strip().startswith("//"):
                    body.append(CONTINUED + lines[k])
                    k += 1
                break
        yield m.group(1), [line] + list(reversed(above)) + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--out", default=str(HERE / "manifest.md"))
    args = ap.parse_args()

    standards = {"3.1.1": load("mqtt-3.1.1.tsv"), "5.0": load("mqtt-5.0.tsv")}
    untestable, untestable_errors = load_untestable(standards)
    covered = {v: {} for v in standards}
    unknown = []
    files = [p for p in ROOT.rglob("*.rs") if "target" not in p.parts and ".git" not in p.parts]
    for path in sorted(files):
        rel = path.relative_to(ROOT)
        file_default = set()
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("//!") and "cited here" in line:
                file_default = markers(line)
        for name, cite_lines in tests_in(path):
            test = f"{rel}::{name}"
            # The test's name may say its version (`..._v5`), else its file: the default for
            # its citations.
            fallback = markers(name) or file_default or {"3.1.1", "5.0"}
            # The comments above the test (in reading order) and its first comment line, read
            # as one text, so a version on the next line still follows its ids.
            name_line = cite_lines[0]
            citing = [l for l in cite_lines[1:] if not l.startswith(CONTINUED)]
            continued = [l[1:] for l in cite_lines[1:] if l.startswith(CONTINUED)]
            text = " ".join(comment_text(l) for l in citing)
            more = " ".join(comment_text(l) for l in continued)
            cited = citations(text + " " + more, None, limit=len(text))
            # Versions the comments give each id, for the same id in the test's name.
            explicit = {}
            for raw, versions in cited:
                if versions:
                    explicit.setdefault(raw, set()).update(versions)
            cited += [(raw, v or explicit.get(raw)) for raw, v in citations(name_line, None)]
            for raw, versions in cited:
                versions = versions or fallback
                sid = ALIASES.get(raw, raw)
                hit = False
                for v in versions:
                    if sid in standards[v]:
                        covered[v].setdefault(sid, set()).add(test)
                        hit = True
                if not hit and not any(sid in s for s in standards.values()):
                    unknown.append((test, raw))

    out = ["# Conformance manifest", "",
           "Generated by `.ci/conformance/manifest.py` from the test sources: each normative "
           "statement of the two standards and the tests that cite it.", ""]
    summary = []
    both = []  # marked untestable, yet cited: the mark is stale
    for v, ids in standards.items():
        n = len(ids)
        c = len(covered[v])
        u = [sid for sid in untestable[v] if sid not in covered[v]]
        both += [(v, sid) for sid in untestable[v] if sid in covered[v]]
        testable = n - len(u)
        summary.append(
            f"MQTT {v}: {c} of {testable} testable statements cited by at least one test "
            f"({100 * c // testable}%); {len(u)} more marked untestable "
            f"({c + len(u)} of {n} accounted for)"
        )
    out += ["## Coverage", ""] + [f"- {s}" for s in summary] + [""]
    out += ["Statements marked untestable (`untestable.tsv`) show their reason instead of tests.", ""]
    for v, ids in standards.items():
        out += [f"## MQTT {v}", "", "| statement | what it says | tests |", "| --- | --- | --- |"]
        for sid, text in ids.items():
            tests = sorted(covered[v].get(sid, ()))
            cell = "<br>".join(f"`{t}`" for t in tests[:6]) + (f" (+{len(tests) - 6})" if len(tests) > 6 else "")
            if not cell and sid in untestable[v]:
                cell = f"untestable: {untestable[v][sid]}"
            out.append(f"| MQTT-{sid} | {text} | {cell or '**none yet**'} |")
        out.append("")
    pathlib.Path(args.out).write_text("\n".join(out))
    for s in summary:
        print(s)
    for v, sid in both:
        print(f"note: MQTT-{sid} ({v}) is marked untestable but cited by a test: drop the mark")
    for e in untestable_errors:
        print(e)
    if untestable_errors and args.check:
        sys.exit(1)
    if unknown:
        print(f"{len(unknown)} citations of ids no standard has:")
        for test, raw in unknown[:20]:
            print(f"  {test}: MQTT-{raw}")
        if args.check:
            sys.exit(1)


if __name__ == "__main__":
    main()
