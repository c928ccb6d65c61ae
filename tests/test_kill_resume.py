"""A run killed (SIGKILL) at random moments and resumed ends bit-identical to an uninterrupted one.

Reliability issue, item 4. Six kills: three at random moments, three the
moment a checkpoint, `model.keras` or SavedModel write is in progress. The
training data of epoch e is a function of (seed, epoch) (`train_dataset`),
so every variable of the final checkpoint and the test metrics must equal
the uninterrupted run's exactly. (`bench/faults/kill_resume.py --kills=20`
is the long version.)
"""

from bench.faults import kill_resume


def test_six_kills_end_bit_identical_to_the_uninterrupted_run(tmp_path):
    epochs = 10
    reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
    report = kill_resume.kill_and_resume(reference, epochs, kills=0)
    assert report["kills_landed"] == 0
    report = kill_resume.kill_and_resume(killed, epochs, kills=6, seed=1)
    assert report["kills_landed"] >= 5, report
    assert report["kills_during_training"] >= 3, report        # resumed mid-run, not at the end
    assert report["epochs_lost"] == 0, report
    worst, same_metrics = kill_resume.compare(reference, killed, epochs)
    assert worst == 0.0
    assert same_metrics
