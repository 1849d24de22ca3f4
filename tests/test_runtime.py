from seq2seq.runtime import ONEDNN_CACHE_CAPACITY, ONEDNN_CACHE_VARIABLE, bound_onednn_cache


def test_onednn_cache_is_bounded_by_default():
    environ: dict[str, str] = {}
    assert bound_onednn_cache(environ) == str(ONEDNN_CACHE_CAPACITY)
    assert environ == {ONEDNN_CACHE_VARIABLE: str(ONEDNN_CACHE_CAPACITY)}


def test_a_users_onednn_cache_setting_wins():
    environ = {ONEDNN_CACHE_VARIABLE: "1024"}
    assert bound_onednn_cache(environ) == "1024"
    assert environ[ONEDNN_CACHE_VARIABLE] == "1024"
