//! Checking a library file before the dynamic loader maps it, so that a truncated or corrupt
//! file is one error line instead of the death of the whole process.
//!
//! The loader `mmap`s each loadable segment at its file offset without comparing it with the
//! file's size, then reads the dynamic section, symbol tables and relocations through those
//! mappings; any page past the end of a cut file raises SIGBUS (a copy cut at 1 kB to 600 kB
//! killed `tolk plugins`, `tolk check` and `tolk run` with no output). So before `dlopen`, the
//! ELF structure the loader relies on is read from the same open file and checked against the
//! file's length: the header, the program header table, every segment's file range, and every
//! address in the dynamic section that the loader follows (string and symbol tables, hashes,
//! relocations, init/fini arrays, version tables), which must lie inside the file-backed part
//! of a loadable segment. This reads a few kB through [`object`]'s on-demand cache, whatever
//! the library's size.
//!
//! The check is against the file the host then loads: [`super::handshake`] keeps the checked
//! file open and, on Linux, loads it through `/proc/self/fd/N`, so a library replaced on disk
//! (renamed over, as `cargo`, `install` and package managers do) between the check and the
//! load cannot slip an unchecked file in.
//!
//! What a structural check cannot see — bytes that are wrong inside a well-formed file
//! (relocations, version tables, code run at load) — is left to [`super::probe`], which loads
//! each library in a child process first; of 150 copies of a built plugin with 8 random bytes
//! overwritten, 37 killed `tolk plugins` with the check alone, none with the probe. Neither
//! covers a library rewritten *in place* while it is mapped, which kills every process that
//! maps it, at any time (tolk included, in the middle of a run): replace libraries by renaming
//! a new file over them, as installers do.

use std::fs::File;

use object::{
    FileKind, ReadCache, ReadRef, elf,
    read::elf::{Dyn, FileHeader, ProgramHeader},
};

/// Facts about a library that passed the check.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// Its run-time search path (DT_RUNPATH or DT_RPATH) mentions `$ORIGIN`, so it must be
    /// loaded under its real path for its own dependencies to be found.
    pub uses_origin: bool,
}

/// Checks the ELF library open as `file` (of `len` bytes). `Err` says what is wrong, for a
/// message of the form "PATH: truncated or corrupt library, not loaded: …". Files that are no
/// ELF at all, and every file on platforms whose libraries are not ELF, pass: their loader
/// reads the header before mapping anything and refuses them itself.
pub fn check(file: &File, len: u64) -> Result<Checked, String> {
    if !cfg!(unix) || cfg!(target_os = "macos") {
        return Ok(Checked::default());
    }
    let cache = ReadCache::new(file);
    let data = &cache;
    // Anything that is no ELF file at all is left to the loader, which reads (not maps) the
    // header and refuses it with its own message.
    match FileKind::parse(data) {
        Ok(FileKind::Elf64) => check_elf::<elf::FileHeader64<object::Endianness>>(data, len),
        Ok(FileKind::Elf32) => check_elf::<elf::FileHeader32<object::Endianness>>(data, len),
        _ => Ok(Checked::default()),
    }
}

/// A file-backed address range of a loadable segment.
struct Load {
    vaddr: u64,
    filesz: u64,
}

fn check_elf<Elf: FileHeader<Endian = object::Endianness>>(
    data: &ReadCache<&File>,
    len: u64,
) -> Result<Checked, String> {
    let header = Elf::parse(data).map_err(|e| format!("ELF header: {e}"))?;
    let endian = header.endian().map_err(|e| format!("ELF header: {e}"))?;
    if header.e_type(endian) != elf::ET_DYN {
        return Err("not a shared library (ELF type is not ET_DYN)".into());
    }
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|e| format!("program headers lie past the end of the file ({len} bytes): {e}"))?;
    if phdrs.is_empty() {
        return Err("no program headers".into());
    }
    let mut loads = Vec::new();
    let mut dynamic = None;
    for ph in phdrs {
        let (offset, filesz) = (ph.p_offset(endian).into(), ph.p_filesz(endian).into());
        let end = offset.checked_add(filesz).ok_or("a segment's file range overflows")?;
        if end > len {
            return Err(format!(
                "a segment ends at byte {end}, past the end of the file ({len} bytes): the file is cut short"
            ));
        }
        if ph.p_type(endian) == elf::PT_LOAD {
            if filesz > ph.p_memsz(endian).into() {
                return Err("a loadable segment is larger in the file than in memory".into());
            }
            loads.push(Load { vaddr: ph.p_vaddr(endian).into(), filesz });
        }
        if let Some(d) = ph.dynamic(endian, data).map_err(|e| format!("dynamic segment: {e}"))? {
            dynamic = Some(d);
        }
    }
    if loads.is_empty() {
        return Err("no loadable segment".into());
    }
    let Some(dynamic) = dynamic else { return Err("no dynamic segment".into()) };
    let inside = |addr: u64, size: u64| {
        loads.iter().any(|l| {
            addr >= l.vaddr && addr.checked_add(size).is_some_and(|end| end <= l.vaddr.saturating_add(l.filesz))
        })
    };
    let value = |tag: elf::DynamicTag| {
        dynamic
            .iter()
            .take_while(|d| d.d_tag(endian) != elf::DT_NULL)
            .find(|d| d.d_tag(endian) == tag)
            .map(|d| d.val(endian))
    };
    // Tables the loader reads, with the tag giving their size (0 when the size is not in the
    // dynamic section: then at least the first byte must be there).
    let tables = [
        (elf::DT_STRTAB, Some(elf::DT_STRSZ)),
        (elf::DT_SYMTAB, None),
        (elf::DT_HASH, None),
        (elf::DT_GNU_HASH, None),
        (elf::DT_RELA, Some(elf::DT_RELASZ)),
        (elf::DT_REL, Some(elf::DT_RELSZ)),
        (elf::DT_RELR, Some(elf::DT_RELRSZ)),
        (elf::DT_JMPREL, Some(elf::DT_PLTRELSZ)),
        (elf::DT_INIT_ARRAY, Some(elf::DT_INIT_ARRAYSZ)),
        (elf::DT_FINI_ARRAY, Some(elf::DT_FINI_ARRAYSZ)),
        (elf::DT_PREINIT_ARRAY, Some(elf::DT_PREINIT_ARRAYSZ)),
        (elf::DT_VERSYM, None),
        (elf::DT_VERDEF, None),
        (elf::DT_VERNEED, None),
    ];
    for (tag, size_tag) in tables {
        let Some(addr) = value(tag) else { continue };
        let size = size_tag.and_then(value).unwrap_or(1).max(1);
        if !inside(addr, size) {
            return Err(format!(
                "its dynamic section points outside the file's loadable data ({tag} at {addr:#x}, {size} bytes)"
            ));
        }
    }
    // $ORIGIN in the run-time search path needs the real path at load time.
    let mut uses_origin = false;
    if let Some(strtab) = value(elf::DT_STRTAB) {
        let strsz = value(elf::DT_STRSZ).unwrap_or(0);
        for tag in [elf::DT_RUNPATH, elf::DT_RPATH] {
            let Some(off) = value(tag) else { continue };
            if off >= strsz {
                return Err(format!("its {tag} lies outside the string table"));
            }
            let addr = strtab.checked_add(off).ok_or_else(|| format!("its {tag} lies outside the string table"))?;
            let text = string_at(data, endian, header, addr)?;
            uses_origin |= text.windows(7).any(|w| w == b"$ORIGIN") || text.windows(9).any(|w| w == b"${ORIGIN}");
        }
    }
    Ok(Checked { uses_origin })
}

/// The NUL-terminated string at virtual address `addr` (known to be inside the string table).
fn string_at<'data, Elf: FileHeader<Endian = object::Endianness>>(
    data: &'data ReadCache<&File>,
    endian: object::Endianness,
    header: &Elf,
    addr: u64,
) -> Result<&'data [u8], String> {
    let phdrs = header.program_headers(endian, data).map_err(|e| e.to_string())?;
    for ph in phdrs.iter().filter(|p| p.p_type(endian) == elf::PT_LOAD) {
        let (vaddr, filesz, offset) =
            (ph.p_vaddr(endian).into(), ph.p_filesz(endian).into(), ph.p_offset(endian).into());
        // Every segment's file range was checked against the file's length already.
        if addr >= vaddr && addr - vaddr < filesz {
            let start = offset + (addr - vaddr);
            let end = offset + filesz;
            return data
                .read_bytes_at_until(start..end, 0)
                .map_err(|_| "a run-time search path is not terminated".to_string());
        }
    }
    Err("a run-time search path lies outside the loadable data".into())
}
