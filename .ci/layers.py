#!/usr/bin/env python3
"""Checks that adapter-tokio/src is layered: each file imports only from files declared before
it in lib.rs (`mod a; mod b; ...`, bottom to top), so the crate has no import cycles.

Uses of `crate::x` outside comments count as imports of the file `x.rs`; the macro
`named_for_runtime!` belongs to `named.rs`, `transports_for_runtime!` to `dial.rs`; lib.rs itself (the top: it only names what is
public) is not checked, nor are a file's unit tests (from the `#[cfg(test)]` or
`#[cfg(all(test, ...))]` before `mod tests` on): a test may drive a layer with what sits above it. Exits 1 and lists the offending lines when a file reaches up."""

import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "adapter-tokio" / "src"
ITEM_OWNER = {"named_for_runtime": "named", "transports_for_runtime": "dial"}


def main() -> int:
    lib = (SRC / "lib.rs").read_text()
    order = re.findall(r"^(?:pub(?:\(crate\))? )?mod (\w+);", lib, re.M)
    rank = {name: i for i, name in enumerate(order)}
    bad = []
    for name in order:
        path = SRC / f"{name}.rs"
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            is_test_cfg = re.match(r"#\[cfg\((all\()?test\b", line.strip())
            if is_test_cfg and number < len(lines) and lines[number].startswith("mod tests"):
                break
            code = line.split("//", 1)[0]
            for target in re.findall(r"(?<![$\w])crate::(\w+)", code):
                target = ITEM_OWNER.get(target, target)
                if target not in rank:
                    bad.append(f"{path.name}:{number}: crate::{target} is not a layer file")
                elif rank[target] >= rank[name]:
                    bad.append(f"{path.name}:{number}: imports {target} (at or above it)")
    print("layers, bottom to top: " + " < ".join(order))
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
