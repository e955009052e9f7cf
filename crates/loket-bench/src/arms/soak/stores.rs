//! Where the soak's bytes are: per store (each directory of the data directory) while the
//! gateway runs, and per sled tree (entries and the bytes of their keys and values) once
//! it has stopped (sled locks a database while the gateway holds it). A file that grows
//! while its trees' logical bytes do not is sled's space amplification, not retention.

use std::path::Path;

use crate::procs::disk_usage;

/// (store, bytes on disk) per directory of `data_dir`, sorted by name.
pub fn per_store(data_dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(data_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), disk_usage(&e.path())))
        .collect();
    out.sort();
    out
}

/// One sled tree's size.
pub struct TreeSize {
    pub store: String,
    pub tree: String,
    pub entries: usize,
    /// Keys plus values.
    pub bytes: u64,
}

/// Every tree of every sled database in `data_dir` (a directory with sled's `conf` file).
pub fn per_tree(data_dir: &Path) -> anyhow::Result<Vec<TreeSize>> {
    let mut out = Vec::new();
    for (store, _) in per_store(data_dir) {
        let dir = data_dir.join(&store);
        if !dir.join("conf").exists() {
            continue;
        }
        let db = sled::Config::new().path(&dir).open()?;
        for name in db.tree_names() {
            let tree = db.open_tree(&name)?;
            let (mut entries, mut bytes) = (0, 0);
            for item in tree.iter() {
                let (k, v) = item?;
                entries += 1;
                bytes += (k.len() + v.len()) as u64;
            }
            out.push(TreeSize {
                store: store.clone(),
                tree: String::from_utf8_lossy(&name).into_owned(),
                entries,
                bytes,
            });
        }
    }
    Ok(out)
}
