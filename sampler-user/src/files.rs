//! Reading a file a user named (the config, a TLS certificate or key, a CA
//! bundle) with a size cap suited to its kind. A bigger file is the wrong
//! path (or `/dev/zero`): it is refused with an error naming the cap,
//! instead of an allocation that grows until the process aborts.

use std::{
    fs::File,
    io::{self, Read},
    path::Path,
};

/// The config file: a few KiB in practice.
pub const CONFIG_MAX: u64 = 1 << 20;
/// A PEM certificate chain.
pub const CERT_MAX: u64 = 1 << 20;
/// A PEM private key.
pub const KEY_MAX: u64 = 64 << 10;
/// A PEM CA bundle (Debian's whole `ca-certificates.crt` is ~220 KiB).
pub const CA_MAX: u64 = 4 << 20;

/// The bytes of `path`, at most `max` of them; more is an `InvalidData`
/// error that names the cap and `what` the file should be.
pub fn read_capped(path: &Path, max: u64, what: &str) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "larger than {} KiB, more than any {what} holds: is it the right file?",
                max / 1024
            ),
        ));
    }
    Ok(bytes)
}

/// At most `max` characters of `s`, with how long it was when cut: what
/// an error message quotes of something a user supplied.
pub fn preview(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}… ({} bytes in all)", &s[..end], s.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_its_cap_and_dev_zero_are_refused_naming_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = dir.path().join("small");
        std::fs::write(&small, b"0123456789").expect("write");
        assert_eq!(read_capped(&small, 10, "key").expect("fits"), b"0123456789");
        let e = read_capped(&small, 9, "key").expect_err("over");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = read_capped(Path::new("/dev/zero"), KEY_MAX, "PEM private key")
            .expect_err("endless")
            .to_string();
        assert!(
            e.contains("larger than 64 KiB") && e.contains("PEM private key"),
            "{e}"
        );
    }

    #[test]
    fn a_preview_is_cut_on_a_character_boundary() {
        assert_eq!(preview("short", 10), "short");
        assert_eq!(preview("ééééé", 2), "éé… (10 bytes in all)");
    }
}
