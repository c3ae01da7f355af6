//! Bottleneck classification scenarios: each makes its own cgroups and
//! checks every group's class on `/metrics` and with `agent classify`.

use std::time::Duration;

use integration_tests::scenario::{Expect, Group, Scenario};

const SETTLE: Duration = Duration::from_secs(7);

#[test]
fn busy_group_is_cpu_saturated() {
    Scenario {
        name: "busy group using all the CPU it may use",
        groups: &[
            Group::new("busy", &["busy", "4"], Expect::Primary("cpu_saturated")),
            Group::new("idle", &["idle"], Expect::Primary("none")),
        ],
        settle: SETTLE,
        agent_args: &[],
        neighbour: None,
    }
    .run();
}

#[test]
fn light_group_beside_busy_neighbour_is_contended() {
    Scenario {
        name: "light group sharing CPUs with a busy neighbour",
        groups: &[
            Group::new("neighbour", &["busy", "4"], Expect::Primary("cpu_saturated")),
            Group::new("light", &["wake-loop", "2000", "200"], Expect::Primary("cpu_contention")),
        ],
        settle: SETTLE,
        agent_args: &[],
        neighbour: Some(("light", "neighbour")),
    }
    .run();
}

#[test]
fn idle_group_is_none() {
    Scenario {
        name: "idle group",
        groups: &[
            Group::new("idle", &["idle"], Expect::Primary("none")),
            Group::new("light", &["wake-loop", "20000", "100"], Expect::Primary("none")),
        ],
        settle: SETTLE,
        agent_args: &[],
        neighbour: None,
    }
    .run();
}
