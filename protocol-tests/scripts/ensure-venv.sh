# Sourced by run.sh and measure.sh: create or reuse protocol-tests/.venv from
# requirements.txt, rebuilding it whenever requirements.txt changes.
# Expects $here (the protocol-tests directory); sets $venv.
venv="$here/.venv"
_python="${PYTHON:-python3}"
_stamp="$venv/.requirements.sha256"
_want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]]; then
    echo "protocol-tests: installing requirements.txt into $venv" >&2
    rm -rf "$venv"
    "$_python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$here/requirements.txt"
    echo "$_want" >"$_stamp"
fi
