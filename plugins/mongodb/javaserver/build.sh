#!/usr/bin/env bash
# Fetch and compile mongo-java-server (MongoDB wire protocol, in memory) for the tests of the
# MongoDB backend's MongoDB path (FerretDB covers the other path).
#
# Usage: plugins/mongodb/javaserver/build.sh
#
#   * Maven fetches de.bwaldvogel:mongo-java-server (pom.xml) and its dependencies; Main.java
#     is compiled against them. Everything goes to
#     ${KUBENENC_CACHE_DIR:-$HOME/.cache/kubenenc}/mongo-java-server (lib/*.jar, classes/) and
#     is reused while a stamp (hash of pom.xml, Main.java and the Java version) matches.
#   * Without `java`, `javac` or `mvn`: exit 0 with a message on a laptop (those tests then
#     skip), exit 1 when CI is set. A failed build always exits 1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${KUBENENC_CACHE_DIR:-$HOME/.cache/kubenenc}"
OUT="$CACHE_DIR/mongo-java-server"
STAMP_FILE="$OUT/.stamp"

say() { printf '[mongo-java-server] %s\n' "$*"; }
ci_is_set() {
    case "${CI:-}" in
        "" | false | 0 | no) return 1 ;;
        *) return 0 ;;
    esac
}

for tool in java javac mvn; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if ci_is_set; then
            say "ERROR: '$tool' is not on PATH; CI is set, failing." >&2
            exit 1
        fi
        say "'$tool' is not on PATH: not building; the mongo-java-server tests will be skipped."
        exit 0
    fi
done

java_version="$(java -version 2>&1 | head -n 1)"
stamp="$(cat "$HERE/pom.xml" "$HERE/Main.java" | sha256sum | cut -d' ' -f1) $java_version"
if [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$stamp" ]; then
    say "up to date: $OUT"
    exit 0
fi

mkdir -p "$CACHE_DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
say "fetching with Maven and compiling into $OUT"
(cd "$HERE" && mvn -q -B -f pom.xml dependency:copy-dependencies -DoutputDirectory="$work/lib")
mkdir -p "$work/classes"
javac -d "$work/classes" -cp "$work/lib/*" "$HERE/Main.java"
rm -rf "$OUT"
mv "$work" "$OUT"
trap - EXIT
printf '%s' "$stamp" >"$STAMP_FILE"
say "built: $OUT"
