"""Record a runner session, then replay its actions with the recorded selector over DDS."""

from __future__ import annotations

from sensor_msgs.msg import JointState

from devbot.bag import list_sessions

RUNNER = 'launch/toroidal_dot_runner.launch.yaml'
NS = '/toroidal_dot/'


def test_recorded_selector_reproduces_a_recorded_session_and_stops_at_its_end(launch, probe, tmp_path):
    sessions = tmp_path / 'sessions'
    run = launch(RUNNER, 'record:=true', f'sessions_dir:={sessions}', 'sequence:=1,0,1,1,0,0',
                 'max_steps:=24', 'seed:=4', f'report_dir:={tmp_path / "r1"}')
    assert run.wait(120) == 0, run.output
    [info] = list_sessions(sessions)
    from devbot.bag import Session
    with Session(info.path) as session:
        recorded = [a.index for a in session.actions()]
    # wait_for_recorder: the bag starts with the very first command
    assert recorded == [1, 0, 1, 1, 0, 0] * 4, recorded

    executed = probe.record(JointState, NS + 'motor_command/executed')
    replay = launch(RUNNER, 'selector:=recorded', f'session:={info.path}', 'action_delay:=0.05',
                    f'report_dir:={tmp_path / "r2"}')
    assert probe.spin_until(lambda: replay.proc.poll() is not None, timeout=120), replay.output
    probe.spin_until(lambda: False, timeout=0.3)
    assert replay.wait(10) == 0, replay.output
    assert 'steps: 24' in replay.output
    seen = [int(e.position[0]) for e in executed]
    # the probe may join a few steps late; what it saw is the recorded tail, in order
    assert len(seen) >= 12 and seen == recorded[len(recorded) - len(seen):], seen

    # a filter replays only whole matching transitions
    filtered = launch(RUNNER, 'selector:=recorded', f'session:={info.path}', 'filter:=actions=1',
                      f'report_dir:={tmp_path / "r3"}')
    assert filtered.wait(120) == 0, filtered.output
    assert 'steps: 12' in filtered.output
