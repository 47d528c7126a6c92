"""The translate path imports only what a model needs: no ESPnet task or tokenizer registry."""

import subprocess
import sys

# Imported through ESPnet's registries (tasks, tokenizers, trainer), never needed to translate.
NOT_ON_THE_TRANSLATE_PATH = (
    "g2p_en", "nltk", "inflect", "espnet2.tasks.abs_task", "espnet2.train.trainer", "espnet2.text.build_tokenizer",
)


def modules_after(statement: str) -> set:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_importing_the_inference_api_pulls_in_no_registry():
    loaded = modules_after("import espnet2_ext.inference.speech2translation")
    assert not loaded & set(NOT_ON_THE_TRANSLATE_PATH)


def test_translate_help_imports_no_torch():
    loaded = modules_after(
        "import espnet2_ext.bin.translate as t\n"
        "try:\n    t.get_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert "torch" not in loaded and not loaded & set(NOT_ON_THE_TRANSLATE_PATH)
