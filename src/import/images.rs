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
    match crate::http::images::check(bytes.into()) {
        Some(image) => Resolved::Stored(image),
        None => Resolved::Missing(format!(
            "({}) is not a PNG, JPEG, WebP or AVIF image",
            path.display()
        )),
    }
}
