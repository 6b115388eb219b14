//! Local copies of the room's recordings on the playout machine, fetched ahead of the day and
//! checked against their SHA-256, so that a fallback plays a file that is already there.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use podium_client::{Client, hash_file, pb};

/// The checked copies, by recording id.
#[derive(Debug)]
pub struct Library {
    dir: PathBuf,
    held: BTreeMap<String, PathBuf>,
}

impl Library {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            held: BTreeMap::new(),
        }
    }

    /// The recordings held, checked.
    pub fn held(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }

    /// The checked copy of a recording.
    pub fn file(&self, recording_id: &str) -> Option<&Path> {
        self.held.get(recording_id).map(PathBuf::as_path)
    }

    /// `<dir>/<sha256>.<extension of the uploaded file>`: one file per content.
    fn path_for(&self, recording: &pb::Recording) -> PathBuf {
        let extension = Path::new(&recording.file_name)
            .extension()
            .and_then(|e| e.to_str())
            .filter(|e| e.chars().all(|c| c.is_ascii_alphanumeric()))
            .unwrap_or("media");
        self.dir.join(format!("{}.{extension}", recording.sha256))
    }

    /// Makes sure every recording of `sessions` is here and checked: a copy not yet checked
    /// in this run is hashed, one that does not match is deleted and fetched again, a missing
    /// one is fetched. Answers what could not be made ready, for people.
    /// `ready` hears the library after each copy is made ready, so a fallback can use it before
    /// the rest are checked.
    pub async fn prepare(
        &mut self,
        client: &Client,
        conference_id: &str,
        sessions: &[String],
        mut ready: impl FnMut(&Library),
    ) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = tokio::fs::create_dir_all(&self.dir).await {
            return vec![format!("cannot create {}: {e}", self.dir.display())];
        }
        for session_id in sessions {
            let request = pb::ListRecordingsRequest {
                conference_id: conference_id.to_owned(),
                session_id: session_id.clone(),
            };
            let recordings = match client.recordings().list_recordings(request).await {
                Ok(response) => response.into_inner().recordings,
                Err(status) => {
                    problems.push(format!(
                        "cannot list the recordings of {session_id}: {}",
                        status.message()
                    ));
                    continue;
                }
            };
            for recording in recordings {
                match self.hold(client, conference_id, &recording).await {
                    Ok(()) => ready(self),
                    Err(problem) => problems.push(problem),
                }
            }
        }
        problems
    }

    async fn hold(
        &mut self,
        client: &Client,
        conference_id: &str,
        recording: &pb::Recording,
    ) -> Result<(), String> {
        let path = self.path_for(recording);
        if self.held.get(&recording.id) == Some(&path) && path.exists() {
            return Ok(());
        }
        if path.exists() {
            match hash_file(&path, |_| {}).await {
                Ok((sha256, _)) if sha256 == recording.sha256 => {
                    self.held.insert(recording.id.clone(), path);
                    return Ok(());
                }
                _ => {
                    tracing::warn!(recording = %recording.id, path = %path.display(), "local copy does not match its SHA-256; fetching it again");
                    let _ = tokio::fs::remove_file(&path).await;
                }
            }
        }
        self.held.remove(&recording.id);
        let fetched = match client
            .fetch_recording_file(conference_id, &recording.id, &path, true, |_| {})
            .await
        {
            Ok(fetched) => fetched,
            Err(error) => {
                // A partial download that cannot be resumed is started again next time.
                if matches!(error, podium_client::TransferError::Corrupt(_)) {
                    let _ = tokio::fs::remove_file(podium_client::part_path(&path)).await;
                }
                return Err(format!("cannot fetch {}: {error}", recording.id));
            }
        };
        tracing::info!(recording = %recording.id, path = %fetched.path.display(), bytes = fetched.size_bytes, "recording fetched and checked");
        self.held.insert(recording.id.clone(), path);
        Ok(())
    }

    /// Forgets a copy that turned out to be missing, so the next `prepare` fetches it again.
    pub fn forget(&mut self, recording_id: &str) {
        self.held.remove(recording_id);
    }
}
