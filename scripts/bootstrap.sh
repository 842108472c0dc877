# Sourced by ./run-demo and ./run-tests: installs what xunjian needs on a fresh Debian machine.
# System packages: Debian's chromium (rendered pages, screenshots) and a CJK font. Python: a .venv with
# the project installed editable. Re-running is cheap: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${XUNJIAN_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need_apt+=(fonts-wqy-zenhei)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
    echo "error: need Debian packages ${need_apt[*]} (run as root or install them)" >&2; exit 1; fi
  echo ">> installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp="$VENV/.xunjian-installed"
want="$(sha256sum pyproject.toml | cut -c1-64)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo ">> preparing $VENV (pip install -e '.[test,pg]')"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,pg]'
  echo "$want" > "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"
