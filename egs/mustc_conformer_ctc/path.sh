# Sourced by run.sh: the project's virtual environment and this recipe's helpers.
recipe_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "${recipe_root}/../.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "${repo_root}/.venv/bin/activate" ]; then
    . "${repo_root}/.venv/bin/activate"
fi
export PYTHONPATH="${repo_root}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONIOENCODING=UTF-8 LC_ALL=C.UTF-8
