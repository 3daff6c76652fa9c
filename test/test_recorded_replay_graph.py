"""Record a runner session, then replay its actions with the recorded selector over DDS."""

from __future__ import annotations

from devbot.bag import Session, list_sessions

RUNNER = 'launch/toroidal_dot_runner.launch.yaml'


def test_recorded_selector_reproduces_a_recorded_session_and_stops_at_its_end(launch, tmp_path):
    sessions = tmp_path / 'sessions'
    run = launch(
        RUNNER,
        'record:=true',
        f'sessions_dir:={sessions}',
        'sequence:=1,0,1,1,0,0',
        'max_steps:=24',
        'seed:=4',
        f'report_dir:={tmp_path / "r1"}',
    )
    assert run.wait(120) == 0, run.output
    [info] = list_sessions(sessions)
    assert info.complete, run.output
    with Session(info.path) as session:
        recorded = [a.index for a in session.actions()]
    # wait_for_recorder: the bag starts with the very first command
    assert recorded == [1, 0, 1, 1, 0, 0] * 4, recorded

    # the replay is recorded too: wait_for_recorder holds the first command until the recorder
    # listens, so the second bag holds every replayed action
    replayed = tmp_path / 'replayed'
    replay = launch(
        RUNNER,
        'selector:=recorded',
        f'session:={info.path}',
        'record:=true',
        f'sessions_dir:={replayed}',
        f'report_dir:={tmp_path / "r2"}',
    )
    assert replay.wait(120) == 0, replay.output
    assert 'steps: 24' in replay.output
    [again] = list_sessions(replayed)
    assert again.complete, replay.output
    with Session(again.path) as session:
        assert [a.index for a in session.actions()] == recorded

    # a filter replays only whole matching transitions
    filtered = launch(
        RUNNER,
        'selector:=recorded',
        f'session:={info.path}',
        'filter:=actions=1',
        f'report_dir:={tmp_path / "r3"}',
    )
    assert filtered.wait(120) == 0, filtered.output
    assert 'steps: 12' in filtered.output
