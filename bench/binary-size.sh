#!/usr/bin/env bash
# Where a kiln binary's size goes: its ELF sections, then its code and data by the crate whose
# path names each symbol (the first `crate::` in the demangled name; a generic function is
# counted in the crate that defines it, wherever it was instantiated). Needs a binary with its
# symbol table: a test build, or `cargo build --release --config profile.release.strip=false`.
#
#   bench/binary-size.sh BINARY [TOP]       # TOP: how many crates to list (default 25)
set -euo pipefail
binary="$1"
top="${2:-25}"

echo "## sections (MB)"
size -A "$binary" | awk 'NR > 2 && $1 != "Total" && $2 > 500000 { printf "%-24s %7.1f\n", $1, $2 / 1e6 }'

echo
echo "## symbols by crate (MB)"
nm -S --size-sort -t d --demangle=rust "$binary" | awk '
  NF >= 4 {
    size = $2 + 0
    name = $0
    sub(/^[^ ]+ [^ ]+ [^ ]+ /, "", name)
    # A generic of the standard library (drop_in_place<T>, Vec<T>::...) counts in the crate of T.
    sub(/^<?(core|alloc|std)::[A-Za-z0-9_:]*</, "", name)
    crate = "(other)"
    if (match(name, /[A-Za-z_][A-Za-z0-9_]*::/)) crate = substr(name, RSTART, RLENGTH - 2)
    total[crate] += size
    all += size
  }
  END {
    for (c in total) printf "%8.2f %s\n", total[c] / 1e6, c
    printf "%8.2f %s\n", all / 1e6, "(all symbols)"
  }' | sort -rn | head -n "$((top + 1))"
