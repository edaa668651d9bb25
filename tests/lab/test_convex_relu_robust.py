"""convex-relu-robust: at a large radius the robust convex network keeps more accuracy under PGD."""

from lab import get


def test_robust_solution_beats_the_standard_one_under_pgd_at_large_eps(store):
    experiment = get("convex-relu-robust")
    run_id = experiment.run(experiment.config(n_eps=2, max_eps=0.3, pgd_steps=30), store=store)
    wide = store.metrics(run_id).pivot(index="step", columns="name", values="value")
    assert wide["eps"].tolist() == [0.15, 0.3] and wide["robust.status_optimal"].min() == 1.0
    last = wide.iloc[-1]
    assert last["robust.pgd_test"] > last["standard.pgd_test"]
    assert last["robust.pgd_train"] > last["standard.pgd_train"]
    # robustness costs clean accuracy here; the standard solution fits the training set better
    assert last["standard.clean_test"] >= last["robust.clean_test"]
    # PGD can only lower accuracy
    assert (wide["standard.pgd_test"] <= wide["standard.clean_test"]).all()
