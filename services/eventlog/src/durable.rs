//! Files podium keeps beside its log, made durable before anything relies on them: the token
//! signing key and the admin token, anonymous polls' keys, recordings. A file's bytes are on
//! stable storage once the file is fsynced, and its name once the directory holding it is; so
//! after a create, a rename or an unlink the directory is fsynced too. A service that has
//! acknowledged a write has called one of these and seen it return.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// Fsyncs a directory, making the names in it (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Fsyncs the directory that holds `path`.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// Creates `dir` and its missing parents, each made durable in its parent. A directory that
/// already exists is fsynced in its parent too: an earlier process may have created it and
/// stopped before doing so.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut next = Some(dir);
    while let Some(path) = next {
        if path.as_os_str().is_empty() || path.is_dir() {
            break;
        }
        missing.push(path.to_path_buf());
        next = path.parent();
    }
    for path in missing.iter().rev() {
        match fs::create_dir(path) {
            Ok(()) => {}
            // Another thread or process made it meanwhile.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(e),
        }
        sync_parent(path)?;
    }
    if missing.is_empty() {
        sync_parent(dir)?;
    }
    sync_dir(dir)
}

/// Replaces `path` with `bytes`, readable by its owner only, atomically and durably: the bytes
/// go to a temporary file beside it, which is fsynced, renamed over `path`, and the directory
/// fsynced. After a crash `path` holds the old bytes or the new ones, never a part.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(".tmp");
    let temp = path.with_file_name(temp_name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    // The mode of `open` applies to new files only; a temporary file an earlier process left
    // behind is tightened too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    sync_parent(path)
}

/// Renames `from` to `to` and fsyncs the directories of both, so that the new name is durable
/// and the old one does not come back.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_parent(to)?;
    if from.parent() != to.parent() {
        sync_parent(from)?;
    }
    Ok(())
}

/// Removes the file at `path` durably: unlinks it and fsyncs its directory. Returns whether
/// the file was there; the directory is fsynced either way, since an earlier unlink that was
/// not yet durable would otherwise come back after a power cut.
pub fn remove_file(path: &Path) -> io::Result<bool> {
    let existed = match fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    sync_parent(path)?;
    Ok(existed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_nested_directories_and_accepts_existing_ones() -> io::Result<()> {
        let temp = tempfile::tempdir()?;
        let dir = temp.path().join("a/b/c");
        create_dir_all(&dir)?;
        assert!(dir.is_dir());
        create_dir_all(&dir)?;
        fs::write(temp.path().join("file"), b"x")?;
        assert!(create_dir_all(&temp.path().join("file/d")).is_err());
        Ok(())
    }

    #[test]
    fn private_files_are_replaced_whole_and_readable_by_their_owner_only() -> io::Result<()> {
        let temp = tempfile::tempdir()?;
        let path = temp.path().join("secret.key");
        write_private(&path, b"first")?;
        write_private(&path, b"second")?;
        assert_eq!(fs::read(&path)?, b"second");
        let names: Vec<_> = fs::read_dir(temp.path())?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        assert_eq!(names, ["secret.key"], "no temporary file is left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        }
        Ok(())
    }

    #[test]
    fn renames_and_removals_report_what_they_did() -> io::Result<()> {
        let temp = tempfile::tempdir()?;
        let (from, to) = (temp.path().join("tmp/part"), temp.path().join("done/file"));
        create_dir_all(from.parent().unwrap())?;
        create_dir_all(to.parent().unwrap())?;
        fs::write(&from, b"bytes")?;
        rename(&from, &to)?;
        assert!(!from.exists() && fs::read(&to)? == b"bytes");
        assert!(remove_file(&to)?);
        assert!(!remove_file(&to)?);
        assert!(rename(&from, &to).is_err());
        Ok(())
    }
}
