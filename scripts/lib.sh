# Shared steps of scripts/serve.sh and scripts/test.sh: set up what a fresh machine lacks.
# Sourced, not run. Installs Debian packages only when running as root.

VENV=${VECHE_VENV:-.venv}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_debian_packages() {
  # $@: "command:package" pairs; installs the packages whose command is missing.
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] || install_debian_packages "${missing[@]}"
}

need_debian_files() {
  # $@: "path:package" pairs; installs the packages whose file is missing (data, not commands).
  local missing=() pair
  for pair in "$@"; do
    [ -e "${pair%:*}" ] || missing+=("${pair##*:}")
  done
  [ ${#missing[@]} -eq 0 ] || install_debian_packages "${missing[@]}"
}

install_debian_packages() {
  if [ "$(id -u)" -ne 0 ]; then
    say "missing: $*; install them (sudo apt-get install -y $*) and run again"
    exit 1
  fi
  say "installing Debian packages: $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

python_env() {
  # $1: pip extras, e.g. ".[dev]"
  local target=${1:-.}
  if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
      local version
      version=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      install_debian_packages "python${version}-venv"
    fi
    say "creating $VENV"
    python3 -m venv "$VENV"
  fi
  say "installing Python packages ($target)"
  # Build chatter goes to a log; it is shown only when the install fails.
  local log="$VENV/install.log"
  if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
         "$VENV/bin/python" -m pip install -q -e "$target"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    say "installing Python packages failed (full log: $log)"
    exit 1
  fi
}

frontend_env() {
  need_debian_packages npm:npm
  say "installing front-end packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
}
