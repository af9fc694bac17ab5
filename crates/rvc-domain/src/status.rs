use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?}; expected one of: {}",
                        stringify!($name),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum!(
    /// Where a product stands in the pipeline (contract: operators and POS read these names).
    ProductStatus {
        Registered => "registered",
        ImagesStored => "images_stored",
        Vectorized => "vectorized",
        Indexed => "indexed",
        Failed => "failed",
    }
);

text_enum!(
    /// The step an outbox row asks for.
    OutboxKind {
        UploadImages => "upload_images",
        Vectorize => "vectorize",
        Publish => "publish",
    }
);

text_enum!(
    /// Lifecycle of one outbox row.
    OutboxState {
        Pending => "pending",
        Leased => "leased",
        Done => "done",
        Dead => "dead",
    }
);

impl OutboxKind {
    /// The step that follows this one, if any.
    pub fn next(self) -> Option<OutboxKind> {
        match self {
            OutboxKind::UploadImages => Some(OutboxKind::Vectorize),
            OutboxKind::Vectorize => Some(OutboxKind::Publish),
            OutboxKind::Publish => None,
        }
    }

    /// Product status once this step is done.
    pub fn status_when_done(self) -> ProductStatus {
        match self {
            OutboxKind::UploadImages => ProductStatus::ImagesStored,
            OutboxKind::Vectorize => ProductStatus::Vectorized,
            OutboxKind::Publish => ProductStatus::Indexed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for k in OutboxKind::ALL {
            assert_eq!(k.as_str().parse::<OutboxKind>().unwrap(), *k);
        }
        for s in ProductStatus::ALL {
            assert_eq!(s.to_string().parse::<ProductStatus>().unwrap(), *s);
        }
        let err = "nope".parse::<OutboxState>().unwrap_err();
        assert!(err.contains("pending, leased, done, dead"), "{err}");
    }

    #[test]
    fn steps_chain_to_indexed() {
        let mut k = OutboxKind::UploadImages;
        let mut seen = vec![k.status_when_done()];
        while let Some(n) = k.next() {
            k = n;
            seen.push(k.status_when_done());
        }
        assert_eq!(
            seen,
            [
                ProductStatus::ImagesStored,
                ProductStatus::Vectorized,
                ProductStatus::Indexed
            ]
        );
    }
}
