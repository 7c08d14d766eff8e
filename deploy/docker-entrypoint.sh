#!/bin/sh
# The image's entrypoint: the first argument names what to run.
set -eu
command="${1:-gateway}"
[ "$#" -gt 0 ] && shift
case "$command" in
  gateway|collector|previewer|refresher|scheduler)
    exec python -m "freshet.$command" "$@" ;;
  migrate)
    exec python -m freshet.catalog migrate "$@" ;;
  create-topics)
    exec python -m freshet.kit.broker create-topics "$@" ;;
  rotate-secrets)
    exec python -m freshet.kit.secrets rotate "$@" ;;
  freshet)
    exec freshet "$@" ;;
  *)
    exec "$command" "$@" ;;
esac
