"""CpuLanes: at most N turns at once, waiting turns granted earliest deadline first."""

import threading
import time

import pytest

from tts_common.cpu_lanes import CpuLanes


def test_waiting_turns_go_in_deadline_order_not_arrival_order():
    lanes = CpuLanes(1)
    order: list[float] = []
    started = threading.Barrier(2)

    def holder():
        with lanes.turn(0.0):
            started.wait()
            while len(lanes._waiting) < 3:  # hold the lane until all three are queued
                time.sleep(0.005)

    def waiter(deadline: float):
        with lanes.turn(deadline):
            order.append(deadline)

    first = threading.Thread(target=holder)
    first.start()
    started.wait()
    threads = []
    for deadline in (30.0, 10.0, 20.0):  # arrive late-deadline first
        thread = threading.Thread(target=waiter, args=(deadline,))
        thread.start()
        threads.append(thread)
        while len(lanes._waiting) < len(threads):
            time.sleep(0.005)
    for thread in [first, *threads]:
        thread.join(5)
    assert order == [10.0, 20.0, 30.0]


def test_never_more_than_n_turns_at_once():
    lanes = CpuLanes(2)
    inside, peak = [0], [0]
    lock = threading.Lock()

    def work(i: int):
        with lanes.turn(float(i)):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.01)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert peak[0] == 2
    assert lanes._busy == 0 and not lanes._waiting  # every lane handed back


def test_a_failing_turn_hands_its_lane_back():
    lanes = CpuLanes(1)
    with pytest.raises(RuntimeError):
        with lanes.turn(0.0):
            raise RuntimeError("model failed")
    with lanes.turn(0.0):
        pass
    assert lanes._busy == 0


def test_at_least_one_lane():
    with pytest.raises(ValueError):
        CpuLanes(0)


def test_a_lone_turn_may_take_every_free_lane_and_gives_them_all_back():
    lanes = CpuLanes(2)
    with lanes.turn(0.0, most=2) as held:
        assert held.lanes == 2
        assert lanes._busy == 2
    assert lanes._busy == 0
    with lanes.turn(0.0) as one:
        with lanes.turn(0.0, most=2) as rest:
            assert (one.lanes, rest.lanes) == (1, 1)  # only one lane was free
    assert lanes._busy == 0


def test_releasing_several_lanes_wakes_as_many_waiters():
    lanes = CpuLanes(2)
    woke = []

    def waiter(deadline: float):
        with lanes.turn(deadline):
            woke.append(deadline)
            release.wait(5)

    release = threading.Event()
    with lanes.turn(0.0, most=2):
        threads = [threading.Thread(target=waiter, args=(d,)) for d in (1.0, 2.0)]
        for thread in threads:
            thread.start()
        while len(lanes._waiting) < 2:
            time.sleep(0.005)
    give_up = time.monotonic() + 5
    while len(woke) < 2 and time.monotonic() < give_up:
        time.sleep(0.005)
    assert sorted(woke) == [1.0, 2.0]  # both run at once, one lane each
    assert lanes._busy == 2
    release.set()
    for thread in threads:
        thread.join(5)
    assert lanes._busy == 0


def test_a_spare_lane_admits_only_urgent_turns():
    lanes = CpuLanes(1, spare=1, urgent_s=0.5)
    admitted = []

    def waiter(name: str, deadline: float):
        with lanes.turn(deadline):
            admitted.append(name)
            release.wait(5)

    release = threading.Event()
    with lanes.turn(time.monotonic() + 60):  # the one regular lane, busy
        relaxed = threading.Thread(target=waiter, args=("relaxed", time.monotonic() + 60))
        relaxed.start()
        while not lanes._waiting:
            time.sleep(0.005)
        urgent = threading.Thread(target=waiter, args=("urgent", time.monotonic()))
        urgent.start()
        give_up = time.monotonic() + 5
        while not admitted and time.monotonic() < give_up:
            time.sleep(0.005)
        # the urgent turn runs on the spare lane at once; the relaxed one still waits
        assert admitted == ["urgent"]
        assert lanes._busy == 2 and len(lanes._waiting) == 1
        release.set()
        urgent.join(5)
        assert lanes._busy == 1 and len(lanes._waiting) == 1  # no regular lane free yet
    relaxed.join(5)
    assert admitted == ["urgent", "relaxed"]
    assert lanes._busy == 0 and not lanes._waiting


def test_a_holder_of_every_lane_shares_them_once_others_wait():
    lanes = CpuLanes(2)
    admitted = threading.Event()

    def waiter():
        with lanes.turn(1.0):
            admitted.set()

    with lanes.turn(0.0, most=2) as turn:
        assert turn.lanes == 2
        turn.share()  # nobody waits: keeps both
        assert turn.lanes == 2
        thread = threading.Thread(target=waiter)
        thread.start()
        while not lanes._waiting:
            time.sleep(0.005)
        turn.share()
        assert turn.lanes == 1
        assert admitted.wait(5)  # the waiter ran on the lane handed over
    thread.join(5)
    assert lanes._busy == 0


class OneLaneHeld:
    """A lane held until `release()`, and turns that wait for it."""

    def __init__(self, lanes: CpuLanes):
        self.lanes = lanes
        self._release = threading.Event()
        self.threads = [threading.Thread(target=self._hold)]
        self.threads[0].start()
        while lanes._busy < 1:
            time.sleep(0.005)

    def _hold(self) -> None:
        with self.lanes.turn(0.0):
            self._release.wait(5)

    def wait_for_lane(self, deadline: float) -> None:
        def waiter() -> None:
            with self.lanes.turn(deadline):
                pass

        waiting = len(self.lanes._waiting)
        self.threads.append(threading.Thread(target=waiter))
        self.threads[-1].start()
        while len(self.lanes._waiting) <= waiting:
            time.sleep(0.005)

    def release(self) -> None:
        self._release.set()
        for thread in self.threads:
            thread.join(5)


def test_behind_is_how_long_an_overdue_turn_has_waited():
    lanes = CpuLanes(1)
    held = OneLaneHeld(lanes)
    assert lanes.behind_s() == 0.0  # busy, but nobody waits
    held.wait_for_lane(time.monotonic() + 10)
    time.sleep(0.1)
    assert lanes.behind_s() == 0.0  # a waiting stream that is ahead of its listener is not late
    # a stream whose listener ran dry long ago counts from when it asked, not from its deadline
    held.wait_for_lane(time.monotonic() - 100)
    time.sleep(0.2)
    assert 0.2 <= lanes.behind_s() < 50
    held.release()
    assert lanes.behind_s() == 0.0


def test_a_queue_of_new_streams_counts_as_behind_before_any_has_waited():
    lanes = CpuLanes(1)
    lanes._held_s = 0.1  # turns have been held 0.1 s lately
    held = OneLaneHeld(lanes)
    now = time.monotonic()
    for _ in range(5):  # five new streams: each needs its first chunk now
        held.wait_for_lane(now)
    # the fifth is reached after four turns of about 0.1 s on the one lane
    assert lanes.behind_s() >= 0.4
    held.release()
    assert lanes.behind_s() == 0.0
