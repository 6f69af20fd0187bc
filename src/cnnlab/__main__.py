import sys

# Ctrl-C while the first modules load is one line too; main() covers everything after.
try:
    from cnnlab.cli.main import console
except KeyboardInterrupt:
    print("cnnlab: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

console()
