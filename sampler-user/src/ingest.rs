//! Ingest: the kernel side of the drain. It owns the loaded programs and
//! their maps (the ring buffer, the per-CPU state), a userspace source's
//! poller and the hotplug watch, and turns what they hold into
//! [`ledger::Event`]s. It also does what only the kernel side can: narrow a
//! counter the kernel refuses to read from other CPUs, read a counter whose
//! CPUs sleep, read the per-CPU state of silent CPUs, follow CPUs going
//! offline and coming back. It keeps no books.

use std::{collections::HashSet, sync::mpsc::Receiver, time::Instant};

use aya::maps::{MapData, RingBuf};
use sampler_common::{CpuState, STAT_COUNT};
use tokio::io::unix::AsyncFd;
use tracing::{info, warn};

use crate::{
    bpf::{BpfError, ProgramStats, Sampler},
    complaint::Complaint,
    decode::decode,
    hotplug::{Change, Watch},
    ledger::Event,
    perf::boot_ns,
    source::poll::Reading,
};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("watching the ring buffer failed")]
    Poll {
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bpf(#[from] BpfError),
}

pub struct Ingest {
    sampler: Sampler,
    ring: AsyncFd<RingBuf<MapData>>,
    /// Readings of a userspace source's counters, from its poller.
    user_readings: Option<Receiver<Reading>>,
    /// CPUs going offline and coming back, when followed.
    hotplug: Option<Watch>,
    /// What following hotplug found, handed out first by the next
    /// [`Ingest::events`].
    hotplug_events: Vec<Event>,
    /// Counters narrowed to their opening CPU: logged once each.
    narrowed: HashSet<usize>,
    idle_read_complaint: Complaint,
}

impl Ingest {
    pub fn new(
        sampler: Sampler,
        ring: RingBuf<MapData>,
        user_readings: Option<Receiver<Reading>>,
        hotplug: Option<Watch>,
    ) -> Result<Self, IngestError> {
        // SAFETY: the RingBuf owns its map fd and neither closes nor replaces
        // it while registered.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|e| IngestError::Poll { source: e.into() })?;
        Ok(Self {
            sampler,
            ring,
            user_readings,
            hotplug,
            hotplug_events: Vec::new(),
            narrowed: HashSet::new(),
            idle_read_complaint: Complaint::default(),
        })
    }

    /// Resolves when the kernel signals the ring buffer (records are
    /// submitted without wake-ups, so this is early only if a program asks).
    pub async fn readable(&mut self) -> Result<(), IngestError> {
        let mut guard = self
            .ring
            .readable_mut()
            .await
            .map_err(|source| IngestError::Poll { source })?;
        guard.clear_ready();
        Ok(())
    }

    /// Everything waiting, streamed (a record is decoded straight out of the
    /// ring buffer into the books, never copied into a list): CPUs that went
    /// offline or came back first (a reopened counter's book is rebased
    /// before its first reading), then the ring buffer's records, then a
    /// userspace source's readings.
    pub fn events(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.follow_hotplug();
        let ring = self.ring.get_mut();
        let records = std::iter::from_fn(move || {
            ring.next().map(|item| match decode(&item) {
                Ok(ev) => Event::Record(ev),
                Err(e) => Event::Malformed(e),
            })
        });
        let user = self.user_readings.iter().flat_map(|rx| {
            rx.try_iter().map(|(counter, ts_ns, raw)| Event::Reading {
                counter,
                ts_ns,
                raw,
                idle_read: false,
            })
        });
        self.hotplug_events.drain(..).chain(records).chain(user)
    }

    /// Of the failed reads, those by another CPU than the counter's opener
    /// are narrowed: that CPU no longer reads it. Returns the pairs
    /// narrowed, for the books to forget.
    pub fn narrow(&mut self, failed: Vec<(u32, usize)>) -> Result<Vec<(u32, usize)>, BpfError> {
        let mut narrowed = Vec::new();
        for (cpu, idx) in failed {
            let Some(c) = self.sampler.counters.get(idx) else {
                continue;
            };
            let open_cpu = c.plan.open_cpu;
            if cpu != open_cpu {
                self.sampler.narrow(cpu, idx)?;
                narrowed.push((cpu, idx));
                if self.narrowed.insert(idx) {
                    info!(cpu, open_cpu, counter = idx, "the kernel refuses to read this energy counter from other CPUs than the one it was opened on (no PMU read scope): reading it on cpu {open_cpu} only");
                }
            }
        }
        Ok(narrowed)
    }

    /// Reads counters whose CPUs sleep, from the daemon.
    pub fn read_counters(&mut self, counters: &[usize], out: &mut Vec<Event>) {
        for &idx in counters {
            if idx >= self.sampler.counters.len() {
                continue;
            }
            match self.sampler.read_counter(idx) {
                // Stamped after the read: a kernel reading stamped earlier
                // than this is then ignored, never double counted.
                Ok(raw) => out.push(Event::Reading {
                    counter: idx,
                    ts_ns: boot_ns(),
                    raw,
                    idle_read: true,
                }),
                Err(e) => {
                    if let Some(failures) = self.idle_read_complaint.failed(Instant::now()) {
                        warn!(error = %e, counter = idx, failures, "reading an idle energy counter failed (logged at most once a minute)");
                    }
                }
            }
        }
    }

    /// The kernel's per-CPU state, one copy per CPU (each consistent or
    /// not, `CpuState::consistent`).
    pub fn cpu_states(&self) -> Result<Vec<CpuState>, BpfError> {
        self.sampler.cpu_states()
    }

    /// The kernel's map statistics and the programs' run statistics.
    pub fn stats(&self) -> Result<([u64; STAT_COUNT as usize], Vec<ProgramStats>), BpfError> {
        Ok((self.sampler.kernel_stats()?, self.sampler.program_stats()))
    }

    /// Detaches a CPU that went offline and attaches one that came back
    /// ([`crate::hotplug`]). A failure is logged and leaves that CPU silent
    /// (its timeline is then closed from its kernel state); the daemon goes
    /// on.
    fn follow_hotplug(&mut self) {
        let Some(watch) = self.hotplug.as_mut() else {
            return;
        };
        for change in watch.poll(Instant::now()) {
            match change {
                Change::Offline(cpu) => {
                    self.hotplug_events.push(Event::Offline { cpu });
                    self.detach(cpu);
                }
                Change::Online(cpu) => {
                    self.hotplug_events.push(Event::Online { cpu });
                    self.attach(cpu);
                }
            }
        }
    }

    /// Detaches CPU `cpu`, which went offline.
    fn detach(&mut self, cpu: u32) {
        let out = &mut self.hotplug_events;
        match self.sampler.detach_cpu(cpu) {
            Ok(d) => {
                out.extend(d.died.iter().map(|&counter| Event::Parked { counter }));
                for &(counter, to) in &d.moved {
                    out.push(Event::Moved { counter, to });
                    info!(
                        cpu,
                        counter,
                        to,
                        "the kernel moved a package counter off the offline cpu: cpu {to} reads it"
                    );
                }
                info!(cpu, counters_parked = d.died.len(), "cpu went offline: its timer is detached and its timeline is idle until it returns");
            }
            Err(e) => {
                warn!(cpu, error = %crate::source::chain(&e), "cpu went offline; detaching its timer failed")
            }
        }
    }

    /// Attaches CPU `cpu`, which came back online.
    fn attach(&mut self, cpu: u32) {
        let mut reopened = Vec::new();
        let r = self.sampler.attach_cpu(cpu, &mut reopened);
        self.hotplug_events.extend(
            reopened
                .iter()
                .map(|&(counter, ts_ns, raw)| Event::Reopened {
                    counter,
                    ts_ns,
                    raw,
                }),
        );
        match r {
            Ok(()) => info!(
                cpu,
                counters_reopened = reopened.len(),
                "cpu came back online: its timer and counters are attached again"
            ),
            Err(e) => {
                warn!(cpu, error = %crate::source::chain(&e), "cpu came back online but attaching it failed: its timeline is closed from its kernel state and what failed to reopen stays parked until ergon restarts")
            }
        }
    }
}
