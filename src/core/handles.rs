//! Small integer handles for what the decision state names many times over: provinces (their
//! 3-digit code as a number), programs (dense, in order of definition), and a chunked arena
//! that grows without ever copying or doubling one large vector.

/// A province's code as a number (`056` -> 56); printed back with three digits.
pub type ProvinceCode = u16;

/// Dense index of a program, in order of `program.defined`.
pub type ProgramHandle = u16;

/// Parses a province code that `decide` already checked against the table.
pub fn province_code(code: &str) -> ProvinceCode {
    assert!(code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()), "province codes are 3 digits");
    code.parse().expect("3 digits fit a u16")
}

pub fn province_str(code: ProvinceCode) -> String {
    format!("{code:03}")
}

/// A citizen ID (12 digits, checked) as a number; printed back with twelve digits.
pub fn cid_number(id: &crate::domain::CitizenId) -> u64 {
    id.as_str().parse().expect("a citizen ID is 12 digits")
}

pub fn cid_of(number: u64) -> crate::domain::CitizenId {
    crate::domain::CitizenId::parse(&format!("{number:012}")).expect("numbers in the state come from checked citizen IDs")
}

const CHUNK: usize = 1 << 12;

/// An append-only vector in chunks of 4,096 entries: growth costs one chunk, never a copy of
/// everything (a `Vec` doubling at 3.4 million people would hold both copies at once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked { chunks: Vec::new(), len: 0 }
    }
}

impl<T> Chunked<T> {
    pub fn push(&mut self, value: T) -> usize {
        if self.len % CHUNK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks.last_mut().expect("a chunk with room").push(value);
        self.len += 1;
        self.len - 1
    }

    pub fn get(&self, i: usize) -> &T {
        assert!(i < self.len, "a handle points inside the arena");
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    pub fn get_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.len, "a handle points inside the arena");
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    /// Heap bytes of the chunks, as allocated (their capacity, not only what they hold).
    pub fn allocated_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Vec<T>>() + self.chunks.iter().map(|c| c.capacity() * std::mem::size_of::<T>()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_holds_every_entry_in_order() {
        let mut c = Chunked::default();
        for i in 0..(CHUNK * 2 + 5) {
            assert_eq!(c.push(i), i);
        }
        assert_eq!(c.len(), CHUNK * 2 + 5);
        assert_eq!(*c.get(CHUNK + 3), CHUNK + 3);
        *c.get_mut(7) = 70;
        assert_eq!(c.iter().nth(7), Some(&70));
        assert_eq!(c.iter().count(), c.len());
    }

    #[test]
    fn codes_round_trip() {
        assert_eq!(province_str(province_code("056")), "056");
        assert_eq!(province_str(province_code("001")), "001");
    }
}
