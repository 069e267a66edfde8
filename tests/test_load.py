"""gunicorn under concurrent load, with a worker SIGKILLed mid-way (bench/load.py, smaller)."""

import pytest

from bench.load import run


@pytest.mark.slow
def test_every_answered_request_has_exactly_one_record_even_when_a_worker_dies():
    result = run(workers=3, threads=4, requests=50, kill_worker=True)
    assert result.killed_pid is not None
    assert (
        len(result.answered) >= 150
    )  # most requests answered; the killed worker's in-flight ones may not
    assert result.missing == set()  # every answered request has its record
    assert result.duplicates == 0
    # a request the killed worker recorded but could not answer is recorded, and nothing else
    assert result.unexplained == set()
