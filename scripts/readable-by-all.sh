# Sourced by scripts/test-all and scripts/shared-install.
#
# readable_by_all PATH: whether a user with no special rights can run PATH, following its
# symlinks to the real file: every folder on the way searchable by others, the file readable
# and executable by them. A venv links to its interpreter, so a venv made from a Python under
# a folder others cannot enter (root's home, mode 700) starts for its owner only.
readable_by_all() {
  local p d mode
  p=$(readlink -f "$1") || return 1
  [ -e "$p" ] || return 1
  mode=$(stat -c '%A' "$p")
  [ "${mode:7:1}" = "r" ] && [ "${mode:9:1}" = "x" ] || return 1
  d=$(dirname "$p")
  while :; do
    mode=$(stat -c '%A' "$d")
    [ "${mode:9:1}" = "x" ] || [ "${mode:9:1}" = "t" ] || return 1
    [ "$d" = "/" ] && return 0
    d=$(dirname "$d")
  done
}
