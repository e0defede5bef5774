"""Rules found by reading the model against the code: each was a silent wrong answer before."""

from __future__ import annotations

import pandas as pd
import pytest

from pbrsim.scenario.schema import ScenarioError
from pbrsim.simulate import simulate

from .conftest import make, scenario


def test_rows_summing_to_just_under_one_never_send_clients_to_the_failure_state():
    almost = {"engaged": 0.8, "referred": 0.1, "dropout": 0.1 - 9e-10}
    sc = scenario(**{"pathway.transitions.easy.full.referred": almost, "pathway.transitions.easy.minimal.referred": almost})
    res = simulate(sc, seed=0, replications=20)
    assert not (res.clients.final_state == "dropped_provider_failure").any()


def test_removing_a_payment_line_keeps_the_other_lines_rejections():
    a = simulate(scenario(), seed=1, replications=5)
    d = make()
    del d["contract"]["payments"][0]  # drop the attachment line: later lines move up one position
    from pbrsim.scenario.schema import scenario_from_dict
    b = simulate(scenario_from_dict(d, "<t>"), seed=1, replications=5)
    cols = ["replication", "month", "segment", "claims", "rejected"]
    ca = a.claims[a.claims["item"] == "job_start"][cols].reset_index(drop=True)
    cb = b.claims[b.claims["item"] == "job_start"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(ca, cb)


def test_running_out_of_cash_after_the_contract_end_drops_nobody():
    # four months of overhead and 5% monthly interest put the provider £453 overdrawn at the contract end; interest in the run-off (kept long
    # by a 10-month payment lag) takes it past its £600 limit at month 9, after the contract has ended
    d = make(**{"months": 4, "referrals": {"monthly": [3], "distribution": "fixed"},
                "provider.opening_cash": 0, "provider.overhead_per_month": 100,
                "provider.cost_per_client_month": {"full": 0, "minimal": 0},
                "provider.credit": {"limit": 600, "monthly_interest": 0.05},
                "contract.service_fee": None, "contract.payments.3.lag": 10})
    for seg in ("easy", "hard"):
        for level in ("full", "minimal"):
            d["pathway"]["transitions"][seg][level]["referred"] = {"referred": 1.0}  # clients stay active to the end
    from pbrsim.scenario.schema import scenario_from_dict
    res = simulate(scenario_from_dict(d, "<t>"), seed=2, replications=2)
    assert len(res.failures) == 2 and (res.failures.failure_month == 9).all()
    assert (res.failures.clients_affected == 0).all()
    assert (res.clients.final_state == "referred").all()
    assert res.summary["organisations"][0]["ran_out_of_cash"]["mean"] == 1.0


@pytest.mark.parametrize("change, path", [
    ({"contract.payments.0.name": "overhead"}, "contract.payments[0].name"),
    ({"provider.name": "commissioner"}, "provider.name"),
    ({"contract.service_fee": {"total": 10, "schedule": []}}, "contract.service_fee.schedule"),
    ({"referrals": {"monthly": [1, 2], "start": 1}}, "referrals"),
])
def test_names_and_fields_that_would_be_ignored_or_collide_are_refused(change, path):
    with pytest.raises(ScenarioError) as err:
        scenario(**change)
    assert path in [p for p, _ in err.value.problems]
