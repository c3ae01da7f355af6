//! A minimal reader of the kernel's BTF: struct member offsets by name.
//!
//! The probes are written in Rust and get no CO-RE relocations, so the
//! agent looks up the few `task_struct`, `css_set`, `cgroup` and
//! `kernfs_node` fields they read in `/sys/kernel/btf/vmlinux` at start-up.
//! aya parses BTF too, but keeps its type lookup private.
//!
//! Format reference: the kernel's `Documentation/bpf/btf.rst`.

use std::{collections::HashMap, fs, path::Path};

use thiserror::Error;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error(
        "cannot read kernel BTF at {path}: {source}; the kernel needs CONFIG_DEBUG_INFO_BTF=y, \
         or pass a BTF file for this kernel with --btf"
    )]
    Read { path: String, source: std::io::Error },
    #[error("invalid BTF data: {0}")]
    Invalid(&'static str),
    #[error("kernel BTF has no struct {0}")]
    StructNotFound(String),
    #[error("kernel BTF has no member {member} in struct {structure}")]
    MemberNotFound { structure: String, member: String },
    #[error("kernel BTF has no enumerator {0}")]
    EnumeratorNotFound(String),
    #[error("kernel BTF has no function type for tracepoint {0} (typedef btf_trace_{0})")]
    TracepointNotFound(String),
}

/// A struct member's position: byte offset from the start of the struct,
/// and its size in bytes when the member is an integer or a pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberOffset {
    pub byte_offset: u32,
    /// Bit size when the member is a bitfield, else 0.
    pub bitfield_size: u32,
    /// Bit position within `byte_offset`'s byte, for bitfields.
    pub bit_in_byte: u32,
    /// Size in bytes of the member's type, when known.
    pub size: u32,
}

#[derive(Clone, Debug)]
struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

#[derive(Clone, Debug)]
enum Type {
    Composite { members: Vec<Member> },
    Sized { size: u32 },
    Pointer { type_id: u32 },
    Reference { type_id: u32 },
    FunctionProto { parameters: u32 },
    Other,
}

/// Prefix of the typedefs the kernel declares for each tracepoint's
/// function type (`btf_trace_sched_switch`), which list its arguments.
const TRACEPOINT_TYPEDEF_PREFIX: &str = "btf_trace_";
const KIND_TYPEDEF: u32 = 8;

/// Parsed BTF types, indexed by type id (id 0 is `void`).
pub struct KernelBtf {
    types: Vec<Type>,
    structs_by_name: HashMap<String, u32>,
    /// Tracepoint typedefs by tracepoint name, without the prefix.
    tracepoints_by_name: HashMap<String, u32>,
    /// Values of every enumerator of every 32-bit enum, by name. Kernel
    /// enumerator names are unique, as in C.
    enumerators: HashMap<String, i64>,
}

impl KernelBtf {
    /// Reads and parses `/sys/kernel/btf/vmlinux`.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = fs::read(path).map_err(|source| BtfError::Read { path: path.display().to_string(), source })?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let reader = Reader(data);
        if reader.u16(0)? != BTF_MAGIC {
            return Err(BtfError::Invalid("bad magic (only little-endian BTF is supported)"));
        }
        let header_len = reader.u32(4)? as usize;
        let type_start = header_len + reader.u32(8)? as usize;
        let type_end = type_start + reader.u32(12)? as usize;
        let string_start = header_len + reader.u32(16)? as usize;
        let string_end = string_start + reader.u32(20)? as usize;
        let strings = data.get(string_start..string_end).ok_or(BtfError::Invalid("string section out of bounds"))?;
        let type_data = data.get(type_start..type_end).ok_or(BtfError::Invalid("type section out of bounds"))?;

        let mut btf = KernelBtf {
            types: vec![Type::Other],
            structs_by_name: HashMap::new(),
            tracepoints_by_name: HashMap::new(),
            enumerators: HashMap::new(),
        };
        btf.parse_types(Reader(type_data), strings)?;
        Ok(btf)
    }

    fn parse_types(&mut self, reader: Reader<'_>, strings: &[u8]) -> Result<(), BtfError> {
        let mut offset = 0;
        while offset < reader.0.len() {
            let name = string_at(strings, reader.u32(offset)?)?;
            let info = reader.u32(offset + 4)?;
            let size_or_type = reader.u32(offset + 8)?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            offset += 12;

            let (parsed, extra) = match kind {
                KIND_INT => (Type::Sized { size: size_or_type }, 4),
                2 => (Type::Pointer { type_id: size_or_type }, 0),
                KIND_ARRAY => (Type::Other, 12),
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for index in 0..vlen {
                        let base = offset + index * 12;
                        let raw_offset = reader.u32(base + 8)?;
                        let (bit_offset, bitfield_size) =
                            if kind_flag { (raw_offset & 0x00ff_ffff, raw_offset >> 24) } else { (raw_offset, 0) };
                        members.push(Member {
                            name: string_at(strings, reader.u32(base)?)?.to_owned(),
                            type_id: reader.u32(base + 4)?,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    if kind == KIND_STRUCT && !name.is_empty() {
                        self.structs_by_name.entry(name.to_owned()).or_insert(self.types.len() as u32);
                    }
                    (Type::Composite { members }, vlen * 12)
                }
                KIND_ENUM => {
                    for index in 0..vlen {
                        let base = offset + index * 8;
                        let enumerator = string_at(strings, reader.u32(base)?)?;
                        let value = i64::from(reader.u32(base + 4)? as i32);
                        self.enumerators.entry(enumerator.to_owned()).or_insert(value);
                    }
                    (Type::Sized { size: size_or_type }, vlen * 8)
                }
                KIND_ENUM64 => (Type::Sized { size: size_or_type }, vlen * 12),
                KIND_FUNC_PROTO => (Type::FunctionProto { parameters: vlen as u32 }, vlen * 8),
                KIND_VAR => (Type::Other, 4),
                KIND_DATASEC => (Type::Other, vlen * 12),
                KIND_DECL_TAG => (Type::Other, 4),
                KIND_TYPEDEF => {
                    if let Some(tracepoint) = name.strip_prefix(TRACEPOINT_TYPEDEF_PREFIX) {
                        self.tracepoints_by_name.insert(tracepoint.to_owned(), self.types.len() as u32);
                    }
                    (Type::Reference { type_id: size_or_type }, 0)
                }
                // volatile, const, restrict, type tag: all refer to another
                // type whose size they share, as a typedef does.
                9..=11 | 18 => (Type::Reference { type_id: size_or_type }, 0),
                16 => (Type::Sized { size: size_or_type }, 0), // float
                7 | 12 => (Type::Other, 0),                    // forward declaration, function
                _ => return Err(BtfError::Invalid("unknown type kind")),
            };
            offset += extra;
            self.types.push(parsed);
        }
        Ok(())
    }

    /// Finds `member` in `struct structure`, looking inside anonymous
    /// structs and unions, which the kernel uses in `task_struct`.
    pub fn member_offset(&self, structure: &str, member: &str) -> Result<MemberOffset, BtfError> {
        let type_id =
            *self.structs_by_name.get(structure).ok_or_else(|| BtfError::StructNotFound(structure.to_owned()))?;
        self.find_member(type_id, member, 0)
            .ok_or_else(|| BtfError::MemberNotFound { structure: structure.to_owned(), member: member.to_owned() })
    }

    fn find_member(&self, type_id: u32, member: &str, base_bits: u32) -> Option<MemberOffset> {
        let Type::Composite { members, .. } = self.types.get(type_id as usize)? else {
            return None;
        };
        for candidate in members {
            let bits = base_bits + candidate.bit_offset;
            if candidate.name == member {
                return Some(MemberOffset {
                    byte_offset: bits / 8,
                    bit_in_byte: bits % 8,
                    bitfield_size: candidate.bitfield_size,
                    size: self.type_size(candidate.type_id).unwrap_or(0),
                });
            }
            if candidate.name.is_empty()
                && let Some(found) = self.find_member(self.resolve(candidate.type_id), member, bits)
            {
                return Some(found);
            }
        }
        None
    }

    fn resolve(&self, mut type_id: u32) -> u32 {
        // Typedef chains in vmlinux are short; the bound guards against a
        // malformed cycle.
        for _ in 0..32 {
            match self.types.get(type_id as usize) {
                Some(Type::Reference { type_id: next }) => type_id = *next,
                _ => break,
            }
        }
        type_id
    }

    fn type_size(&self, type_id: u32) -> Option<u32> {
        match self.types.get(self.resolve(type_id) as usize)? {
            Type::Sized { size } => Some(*size),
            Type::Pointer { .. } => Some(8),
            _ => None,
        }
    }

    /// Returns the value of a C enumerator, such as `cpu_cgrp_id`.
    pub fn enumerator(&self, name: &str) -> Result<i64, BtfError> {
        self.enumerators.get(name).copied().ok_or_else(|| BtfError::EnumeratorNotFound(name.to_owned()))
    }

    /// Returns how many arguments a raw tracepoint passes to BPF programs:
    /// the parameters of its `btf_trace_<name>` function type, less the
    /// leading `void *__data` that programs do not see.
    pub fn tracepoint_arguments(&self, name: &str) -> Result<u32, BtfError> {
        let not_found = || BtfError::TracepointNotFound(name.to_owned());
        let typedef = *self.tracepoints_by_name.get(name).ok_or_else(not_found)?;
        let Some(Type::Pointer { type_id }) = self.types.get(self.resolve(typedef) as usize) else {
            return Err(not_found());
        };
        match self.types.get(self.resolve(*type_id) as usize) {
            Some(Type::FunctionProto { parameters }) => Ok(parameters.saturating_sub(1)),
            _ => Err(not_found()),
        }
    }
}

fn string_at(strings: &[u8], offset: u32) -> Result<&str, BtfError> {
    let tail = strings.get(offset as usize..).ok_or(BtfError::Invalid("string offset out of bounds"))?;
    let end = tail.iter().position(|&byte| byte == 0).unwrap_or(tail.len());
    std::str::from_utf8(&tail[..end]).map_err(|_| BtfError::Invalid("string is not UTF-8"))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u16(&self, offset: usize) -> Result<u16, BtfError> {
        let bytes = self.0.get(offset..offset + 2).ok_or(BtfError::Invalid("truncated"))?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&self, offset: usize) -> Result<u32, BtfError> {
        let bytes = self.0.get(offset..offset + 4).ok_or(BtfError::Invalid("truncated"))?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF bytes with: int (id 1, 4 bytes), pointer to int (id 2),
    /// an anonymous struct { int inner; } (id 3),
    /// struct outer { int a; <anonymous id 3 at byte 8>; int *p; } (id 4),
    /// enum colour { red = 0, blue = 7 } (id 5), and the function type of
    /// a tracepoint `tick(void *__data, int *, int *)`: a prototype (id 6),
    /// a pointer to it (id 7) and `typedef ... btf_trace_tick` (id 8).
    fn sample_btf() -> Vec<u8> {
        let strings = b"\0int\0inner\0outer\0a\0p\0colour\0red\0blue\0btf_trace_tick\0".to_vec();
        let name = |text: &str| -> u32 {
            let needle = [b"\0", text.as_bytes(), b"\0"].concat();
            strings.windows(needle.len()).position(|w| w == needle).unwrap() as u32 + 1
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for word in words {
                types.extend_from_slice(&word.to_le_bytes());
            }
        };
        push(&[name("int"), KIND_INT << 24, 4, 32]);
        push(&[0, 2 << 24, 1]);
        push(&[0, KIND_STRUCT << 24 | 1, 4, name("inner"), 1, 0]);
        push(&[name("outer"), KIND_STRUCT << 24 | 3, 24, name("a"), 1, 0, 0, 3, 64, name("p"), 2, 128]);
        push(&[name("colour"), KIND_ENUM << 24 | 2, 4, name("red"), 0, name("blue"), 7]);
        push(&[0, KIND_FUNC_PROTO << 24 | 3, 0, 0, 2, 0, 2, 0, 2]);
        push(&[0, 2 << 24, 6]);
        push(&[name("btf_trace_tick"), KIND_TYPEDEF << 24, 7]);

        let mut data = Vec::new();
        data.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        data.extend_from_slice(&[1, 0]);
        for word in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        data.extend_from_slice(&types);
        data.extend_from_slice(&strings);
        data
    }

    #[test]
    fn member_offset_direct_and_anonymous() {
        let btf = KernelBtf::parse(&sample_btf()).unwrap();

        assert_eq!(btf.member_offset("outer", "a").unwrap().byte_offset, 0);
        assert_eq!(btf.member_offset("outer", "inner").unwrap().byte_offset, 8);
        assert_eq!(btf.member_offset("outer", "inner").unwrap().size, 4);
        assert_eq!(btf.member_offset("outer", "p").unwrap().byte_offset, 16);
        assert_eq!(btf.member_offset("outer", "p").unwrap().size, 8);
    }

    #[test]
    fn enumerator_values() {
        let btf = KernelBtf::parse(&sample_btf()).unwrap();

        assert_eq!(btf.enumerator("blue").unwrap(), 7);
        assert_eq!(btf.enumerator("red").unwrap(), 0);
        assert!(matches!(btf.enumerator("green"), Err(BtfError::EnumeratorNotFound(_))));
    }

    #[test]
    fn tracepoint_arguments_leave_out_the_data_pointer() {
        let btf = KernelBtf::parse(&sample_btf()).unwrap();

        assert_eq!(btf.tracepoint_arguments("tick").unwrap(), 2);
        assert!(matches!(btf.tracepoint_arguments("tock"), Err(BtfError::TracepointNotFound(_))));
    }

    #[test]
    fn member_offset_missing() {
        let btf = KernelBtf::parse(&sample_btf()).unwrap();

        assert!(matches!(btf.member_offset("outer", "b"), Err(BtfError::MemberNotFound { .. })));
        assert!(matches!(btf.member_offset("nope", "a"), Err(BtfError::StructNotFound(_))));
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(KernelBtf::parse(b"not btf at all, nothing here").is_err());
        assert!(KernelBtf::parse(&[]).is_err());
        let mut truncated = sample_btf();
        truncated.truncate(40);
        assert!(KernelBtf::parse(&truncated).is_err());
    }

    #[test]
    fn running_kernel_task_struct() {
        // Skipped where the kernel has no BTF (e.g. a build container).
        let Ok(btf) = KernelBtf::from_sys_fs() else { return };

        let pid = btf.member_offset("task_struct", "pid").unwrap();
        assert_eq!(pid.size, 4);
        assert!(btf.member_offset("kernfs_node", "id").is_ok());
        assert!(btf.member_offset("css_set", "dfl_cgrp").is_ok());
        assert!(btf.enumerator("cpu_cgrp_id").is_ok());
        // preempt, prev, next and (since Linux 5.18) prev_state.
        assert!(btf.tracepoint_arguments("sched_switch").unwrap() >= 3);
    }
}
