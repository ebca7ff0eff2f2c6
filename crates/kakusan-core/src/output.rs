//! Output files that never overwrite anything: A1111-style numbered names
//! (`00012-1234.png`), writes that land under their final name only once complete, and an
//! output folder that is checked for writability before any work is spent.
//!
//! - [`next_output_path`] reserves the next free number in a folder (the file is created empty
//!   with `create_new`, so two processes never get the same name);
//! - [`write_atomically`] / [`write_atomically_with`] write a temporary file beside the target
//!   and rename it over the target, so a failure leaves no half-written file under the final
//!   name;
//! - [`write_new_output`] does both: reserve, write, and give the reservation back on failure;
//! - [`ensure_writable_dir`] creates the folder if needed and proves it can be written.

mod atomic;
mod numbering;
mod writable_dir;

use std::io;
use std::path::PathBuf;

pub use atomic::{write_atomically, write_atomically_with};
pub use numbering::{next_output_path, sequence_number, write_new_output};
pub use writable_dir::ensure_writable_dir;

/// Why an output file or folder could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output folder does not exist and could not be created.
    #[error(
        "cannot create the output folder {}: {source}; choose a folder you can write to, \
         or create it yourself and check its permissions",
        path.display()
    )]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The output path exists but is a file, not a folder.
    #[error(
        "the output path {} exists but is not a folder; choose a folder (it is created if missing)",
        path.display()
    )]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The output folder exists but a file could not be created in it.
    #[error(
        "cannot write in the output folder {}: {source}; fix its permissions (or free disk \
         space) or choose another folder",
        path.display()
    )]
    NotWritable {
        /// The folder.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The output folder could not be listed to find the next number.
    #[error("cannot list the output folder {} to number the new file: {source}", path.display())]
    ListDir {
        /// The folder.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The numbered name could not be reserved.
    #[error("cannot create {}: {source}", path.display())]
    Reserve {
        /// The file that was to be created.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Every number tried was taken meanwhile (another program writing into the same folder).
    #[error(
        "could not reserve a free file number in {} after {tries} tries; another program keeps \
         taking them; try again or use another folder",
        dir.display()
    )]
    NoFreeNumber {
        /// The folder.
        dir: PathBuf,
        /// How many names were tried.
        tries: usize,
    },
    /// The file extension is not usable in a file name.
    #[error("invalid file extension {0:?}: expected something like \"png\"")]
    BadExtension(String),
    /// Writing the file failed; the file under its name (if any) was left untouched.
    #[error(
        "could not write {}: {source}; the file under that name was left as it was",
        path.display()
    )]
    Write {
        /// The file that was to be written.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
}
