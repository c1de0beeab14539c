"""The Data page says what each augmentation level does, beside its samples."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

from mnistviz import augment

ROOT = Path(__file__).resolve().parent.parent


def test_describe_says_every_transform_of_a_level_with_its_bound():
    assert augment.describe("none") == "no change"
    assert augment.describe("light") == ("rotation up to ±8°, shift up to ±8% (±2.2 px), zoom up to ±8%, "
                                         "shear up to ±5°")
    strong = augment.describe("strong")
    for part in ("rotation up to ±18°", "shift up to ±14% (±3.9 px)", "zoom up to ±18%", "shear up to ±12°",
                 "elastic distortion of about 1.8 px", "strokes thickened or thinned in 40% of images",
                 "a random rectangle erased in 30% of images"):
        assert part in strong
    assert augment.describe(augment.Strength(erase=0.5)) == "a random rectangle erased in 50% of images"


def test_data_page_says_what_the_chosen_level_does(tiny_env, monkeypatch):
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/data.py").run()
    assert not at.exception
    level = at.selectbox(key="data_level").value
    captions = [c.value for c in at.caption]
    assert f"**{level}**: {augment.describe(level)}; each image draws its own amounts within these bounds, anew " \
           f"every epoch." in captions
    at.selectbox(key="data_level").set_value("strong").run()
    assert any(c.startswith("**strong**: rotation up to ±18°") for c in (c.value for c in at.caption))
