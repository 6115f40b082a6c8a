//! Request headers as a webhook sends them, looked up by name whatever its case.

use std::collections::BTreeMap;

/// A delivery's headers; names compare case-insensitively (HTTP/2 and API Gateway lower-case them, GitHub's own
/// docs capitalise them). When a name repeats, the first value counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(BTreeMap<String, String>);

impl Headers {
    /// The value of header `name`, in any case.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            map.entry(name.as_ref().to_ascii_lowercase()).or_insert_with(|| value.as_ref().to_owned());
        }
        Self(map)
    }
}
