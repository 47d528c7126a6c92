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


def test_opening_a_packed_model_pulls_in_no_registry(tiny_exps, tmp_path):
    """Checking an archive's encoder name must not import ESPnet's task (g2p_en, nltk: downloads at import)."""
    from espnet2_ext.bin import pack_model

    exp, model = tiny_exps / "exp_abs", tmp_path / "model.zip"
    argv = ["--exp_dir", str(exp), "--model_file", str(exp / "1epoch.pth"), "--outpath", str(model)]
    assert pack_model.main(argv) == 0
    loaded = modules_after(
        "from espnet2_ext.main_funcs.model_archive import open_model\n"
        f"open_model({str(model)!r}, {str(tmp_path / 'cache')!r})"
    )
    assert not loaded & set(NOT_ON_THE_TRANSLATE_PATH)


def test_simulate_help_and_option_errors_import_no_torch():
    """simulate checks its options (SimulOptions) before loading torch: a typo costs no seconds."""
    loaded = modules_after(
        "import espnet2_ext.bin.simulate as s\n"
        "try:\n    s.get_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
        "from espnet2_ext.simultaneous.options import SimulOptions\n"
        "try:\n    SimulOptions.checked(frame_num=-1)\nexcept ValueError:\n    pass"
    )
    assert "torch" not in loaded and not loaded & set(NOT_ON_THE_TRANSLATE_PATH)
