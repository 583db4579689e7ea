//! A small ordered map on a sorted `Vec`, for the decision state's per-person maps (a person's
//! enrollments, an enrollment's categories and statuses by month). These almost always hold
//! one entry; a `BTreeMap` allocates a node with room for eleven, which made a person cost
//! about 1.6 KB of mostly empty slots. Lookups are a binary search.

use std::borrow::Borrow;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap { entries: Vec::new() }
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// A map with one entry and no spare capacity.
    pub fn one(key: K, value: V) -> Self {
        VecMap { entries: vec![(key, value)] }
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.reserve_exact(1);
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// The entry with the greatest key at or before `key` (`BTreeMap::range(..=key).next_back()`).
    pub fn at_or_before(&self, key: &K) -> Option<(&K, &V)> {
        let end = match self.find(key) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        end.checked_sub(1).map(|i| (&self.entries[i].0, &self.entries[i].1))
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for VecMap<K, V> {
    type Output = V;
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("key present in VecMap")
    }
}

#[cfg(test)]
mod tests {
    use super::VecMap;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_like_a_btreemap() {
        let mut m = VecMap::default();
        let mut b = BTreeMap::new();
        for (i, k) in [5u32, 1, 9, 5, 3, 7, 1, 12].into_iter().enumerate() {
            assert_eq!(m.insert(k, i), b.insert(k, i));
        }
        assert_eq!(m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), b.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
        for probe in 0..14 {
            assert_eq!(m.at_or_before(&probe), b.range(..=probe).next_back(), "at or before {probe}");
            assert_eq!(m.get(&probe), b.get(&probe));
            assert_eq!(m.contains_key(&probe), b.contains_key(&probe));
        }
        assert_eq!(m.len(), b.len());
        assert_eq!(m.keys().next_back(), b.keys().next_back());
    }
}
