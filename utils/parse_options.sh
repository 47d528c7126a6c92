#!/usr/bin/env bash
# Source after setting defaults: turns `--foo-bar VALUE` (or `--foo-bar=VALUE`) into
# foo_bar=VALUE for every variable that already exists, so a typo fails loudly.
# Values are typed by their defaults, as in Kaldi's parse_options.sh: a variable
# whose default is true/false takes only true or false, and one whose default is a
# non-negative integer takes only a non-negative integer (otherwise `--finetune yes`
# would run the `yes` command and `--stage abc` would skip every stage).
# `--help` prints $help_message. Parsing stops at `--` or the first non-option;
# what remains is left in "$@".

while [ $# -gt 0 ]; do
    case "$1" in
        --)
            break ;;
        --help|-h)
            echo "${help_message:-no help available}"
            exit 0 ;;
        --*=*)
            _name="${1%%=*}"; _value="${1#*=}"; shift ;;
        --*)
            if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" >&2; exit 1; fi
            _name="$1"; _value="$2"; shift 2 ;;
        *)
            break ;;
    esac
    _var="${_name#--}"
    _var="${_var//-/_}"
    if [ -z "${!_var+set}" ]; then
        echo "$0: unknown option ${_name}" >&2
        exit 1
    fi
    case "${!_var}" in
        true|false)
            if [ "${_value}" != true ] && [ "${_value}" != false ]; then
                echo "$0: option ${_name} expects true or false, got '${_value}'" >&2
                exit 1
            fi ;;
        *[!0-9]*|'')
            ;;
        *)
            if ! [[ "${_value}" =~ ^[0-9]{1,18}$ ]]; then
                echo "$0: option ${_name} expects a non-negative integer, got '${_value}'" >&2
                exit 1
            fi
            _value=$((10#${_value})) ;;
    esac
    printf -v "${_var}" '%s' "${_value}"
done
unset _name _value _var
true
