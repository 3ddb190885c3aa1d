//! monitor: changes harvested between sends add up in the change map, and
//! the next send carries exactly them.

use super::harness::{volume_bytes, World, CHUNK, VOL};
use crate::ops::monitor::{monitor, MonitorOptions, Tracked};
use crate::ops::send::{send, SendOptions};

fn run_monitor(w: &World) {
    monitor(&w.ctx(), &w.ui, &MonitorOptions::default()).unwrap();
}

fn last_event(w: &World) -> String {
    w.events().last().cloned().expect("an event")
}

#[test]
fn harvests_add_up_until_the_next_send() {
    let w = World::thin(volume_bytes(8, 3));
    run_monitor(&w);
    assert!(
        last_event(&w).contains(&format!("{:?}", Tracked::NotStarted)),
        "{:?}",
        w.events()
    );
    send(&w.ctx(), &w.ui, &SendOptions::default()).unwrap();

    w.lvm.write(VOL, CHUNK, b"one");
    run_monitor(&w);
    let want = Tracked::Harvested {
        harvested: 1,
        pending: 1,
        resync: false,
    };
    assert!(
        last_event(&w).contains(&format!("{want:?}")),
        "{:?}",
        w.events()
    );

    w.lvm.write(VOL, 5 * CHUNK, b"two");
    w.lvm.write(VOL, CHUNK + 1, b"again");
    run_monitor(&w);
    let want = Tracked::Harvested {
        harvested: 2,
        pending: 2,
        resync: false,
    };
    assert!(
        last_event(&w).contains(&format!("{want:?}")),
        "{:?}",
        w.events()
    );

    w.lvm.write(VOL, 6 * CHUNK, b"three");
    send(&w.ctx(), &w.ui, &SendOptions::default()).unwrap();
    let r = w.last_sent();
    assert_eq!(r.changed_chunks, 3, "{r:?}");
    let latest = w.sessions().pop().unwrap();
    assert!(w.restore(&latest) == w.lvm.contents(VOL));
}

#[test]
fn refuses_without_thin_volumes() {
    let w = World::thin(volume_bytes(2, 4));
    let mut ctx = w.ctx();
    ctx.config.source = None;
    let e = monitor(&ctx, &w.ui, &MonitorOptions::default()).unwrap_err();
    assert!(
        format!("{e:#}").contains("monitor works on LVM thin volumes"),
        "{e:#}"
    );
}
