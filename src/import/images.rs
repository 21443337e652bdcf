//! `item.image` of the old frontend: a URL (kept: the frontend shows it as it did), or a path
//! chosen by the old frontend, whose file the café copies into `--images DIR`. Such a file is
//! stored inside the database exactly as an upload is (the same checks: size limit, PNG, JPEG,
//! WebP or AVIF by its bytes).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::store::write::Image;

pub enum Resolved {
    /// An absolute `http(s)` URL, kept as it is.
    Url(String),
    /// The file's bytes, checked, ready to store.
    Stored(Image),
    /// Why there is no image (said in the report).
    Missing(String),
}

pub fn resolve(image: &str, dir: Option<&Path>, max_bytes: usize) -> Resolved {
    // The scheme in lower case: that is how the daemon tells a URL from a stored file name.
    for scheme in ["https://", "http://"] {
        if image.len() > scheme.len()
            && image.is_char_boundary(scheme.len())
            && image[..scheme.len()].eq_ignore_ascii_case(scheme)
        {
            return Resolved::Url(format!("{scheme}{}", &image[scheme.len()..]));
        }
    }
    let Some(dir) = dir else {
        return Resolved::Missing("is a local path: give --images DIR with its file".into());
    };
    // Only paths inside DIR: the old value's directories, else its file name alone.
    let relative: Option<PathBuf> = {
        let mut out = PathBuf::new();
        let mut ok = true;
        for part in Path::new(image).components() {
            match part {
                Component::Normal(p) => out.push(p),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                Component::ParentDir => ok = false,
            }
        }
        (ok && !out.as_os_str().is_empty()).then_some(out)
    };
    let name = Path::new(image).file_name().map(PathBuf::from);
    let candidates = [relative, name].into_iter().flatten().map(|p| dir.join(p));
    let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    for path in candidates {
        let Ok(real) = std::fs::canonicalize(&path) else {
            continue;
        };
        if !real.starts_with(&root) || !real.is_file() {
            continue;
        }
        return read(&real, max_bytes);
    }
    Resolved::Missing(format!("is not in {}", dir.display()))
}

fn read(path: &Path, max_bytes: usize) -> Resolved {
    let mut bytes = Vec::new();
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let read = std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes));
    if let Err(e) = read {
        return Resolved::Missing(format!("could not be read from {}: {e}", path.display()));
    }
    if bytes.len() > max_bytes {
        return Resolved::Missing(format!(
            "({}) is larger than limits.max_upload_bytes ({max_bytes} bytes)",
            path.display()
        ));
    }
    match crate::store::images::check(bytes.into()) {
        Some(image) => Resolved::Stored(image),
        None => Resolved::Missing(format!(
            "({}) is not a PNG, JPEG, WebP or AVIF image",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn urls_stay_paths_are_read_from_the_directory_and_checked_like_uploads() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("static");
        std::fs::create_dir_all(dir.join("images")).expect("mkdir");
        std::fs::write(dir.join("images/bolle.png"), PNG).expect("png");
        std::fs::write(dir.join("notes.png"), b"not an image").expect("text");
        std::fs::write(dir.join("big.png"), [PNG, &[0u8; 64]].concat()).expect("big");
        std::fs::write(root.path().join("secret.png"), PNG).expect("outside");

        assert!(matches!(
            resolve("HTTPS://cdn.kafe.no/a.png", None, 100),
            Resolved::Url(u) if u == "https://cdn.kafe.no/a.png"
        ));
        let stored = resolve("/images/bolle.png", Some(&dir), 100);
        assert!(matches!(&stored, Resolved::Stored(i) if i.content_type == "image/png"));
        // Only the file name is left of a path from elsewhere.
        assert!(matches!(
            resolve("/srv/old/uploads/bolle.png", Some(&dir), 100),
            Resolved::Missing(_)
        ));
        assert!(matches!(
            resolve("bolle.png", Some(&dir), 100),
            Resolved::Missing(_)
        ));
        assert!(matches!(
            resolve("images/bolle.png", Some(&dir), 100),
            Resolved::Stored(_)
        ));
        for refused in [
            "notes.png",
            "big.png",
            "../secret.png",
            "images/../../secret.png",
        ] {
            assert!(
                matches!(resolve(refused, Some(&dir), 40), Resolved::Missing(_)),
                "{refused}"
            );
        }
        assert!(matches!(
            resolve("/images/bolle.png", None, 100),
            Resolved::Missing(_)
        ));
    }
}
