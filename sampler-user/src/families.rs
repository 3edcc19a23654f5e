//! Writing metric families with prometheus-client's collector API: the
//! small helpers every collector (`/metrics`' snapshot, HTTP, push, jobs,
//! names, the process) encodes with.

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};

/// Labelled series of one family, from (labels, value) pairs.
fn labelled<I>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    items: I,
) -> std::fmt::Result
where
    I: IntoIterator<Item = (Vec<(&'static str, String)>, f64)>,
{
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in items {
        match ty {
            MetricType::Counter => ConstCounter::new(v).encode(m.encode_family(&labels)?)?,
            _ => ConstGauge::new(v).encode(m.encode_family(&labels)?)?,
        }
    }
    Ok(())
}

/// A counter family, one series per (labels, value).
pub(crate) fn counter<I>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    items: I,
) -> std::fmt::Result
where
    I: IntoIterator<Item = (Vec<(&'static str, String)>, f64)>,
{
    labelled(enc, name, help, MetricType::Counter, items)
}

/// A gauge family, one series per (labels, value).
pub(crate) fn gauge<I>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    items: I,
) -> std::fmt::Result
where
    I: IntoIterator<Item = (Vec<(&'static str, String)>, f64)>,
{
    labelled(enc, name, help, MetricType::Gauge, items)
}

/// A counter without labels.
pub(crate) fn counter1<V>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> std::fmt::Result
where
    ConstCounter<V>: EncodeMetric,
{
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

/// A gauge without labels.
pub(crate) fn gauge1<V>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> std::fmt::Result
where
    ConstGauge<V>: EncodeMetric,
{
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}
