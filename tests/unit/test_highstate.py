"""Reading a state.apply return: the states in run order, their labels, a run that did not start."""

from paphosting import highstate

RET = {
    "service_|-haproxy_|-haproxy_|-running": {
        "__id__": "haproxy",
        "name": "haproxy",
        "result": False,
        "changes": {},
        "comment": "did not start",
        "__run_num__": 1,
        "duration": 12.5,
    },
    "file_|-config_|-/etc/haproxy/haproxy.cfg_|-managed": {
        "__id__": "config",
        "name": "/etc/haproxy/haproxy.cfg",
        "result": True,
        "changes": {"diff": "+x"},
        "comment": "updated",
        "__run_num__": 0,
    },
    "not a state": "ignored",
}


def test_states_in_the_order_they_ran():
    runs = highstate.states(RET)
    assert [r.label for r in runs] == ["file.managed config", "service.running haproxy"]
    assert runs[0].name == "/etc/haproxy/haproxy.cfg" and runs[0].changes == {"diff": "+x"}
    assert runs[1].result is False and runs[1].duration == 12.5


def test_a_run_that_did_not_start():
    assert highstate.failure(RET) is None
    assert highstate.failure(["Rendering SLS 'x' failed", "more"]) == (
        "Rendering SLS 'x' failed; more"
    )
    assert highstate.failure([]) == "the highstate did not render"
    assert highstate.failure("minion busy") == "minion busy"
    assert highstate.states(["error"]) == []


def test_a_full_return_is_unwrapped():
    assert highstate.unwrap({"ret": RET, "retcode": 2, "jid": "1"}) is RET
    assert highstate.unwrap(RET) is RET
