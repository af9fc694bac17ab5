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
    /// The step an outbox row asks for. The first three are the product pipeline, in order;
    /// `embed` is outside it: it builds a product's points for a recognition model that is
    /// being migrated to (`rvcctl model migrate`) and never moves the product's status.
    OutboxKind {
        UploadImages => "upload_images",
        Vectorize => "vectorize",
        Publish => "publish",
        Embed => "embed",
    }
);

text_enum!(
    /// Where a recognition model stands (table `recognition_models`): at most one `active`
    /// (recognition answers from it) and at most one `building` (its points are being built
    /// for every product; it becomes active, atomically, when they all exist). A `retired`
    /// model's collection is dropped after a grace period (`dropped_at`).
    ModelState {
        Building => "building",
        Active => "active",
        Retired => "retired",
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

text_enum!(
    /// What a product version is: an update (new fields and/or photos: the points are
    /// written, an upsert event goes out) or an archive (the points leave the index, a delete
    /// event goes out). Carried by every outbox row of the version in `payload.change`
    /// ([`VersionChange::PAYLOAD_KEY`]); rows without it are updates.
    VersionChange {
        Update => "update",
        Archive => "archive",
    }
);

impl VersionChange {
    /// The outbox payload field that names the change.
    pub const PAYLOAD_KEY: &'static str = "change";

    /// The change named by an outbox payload's `change` field (absent: an update).
    pub fn from_payload_field(field: Option<&str>) -> Result<Self, String> {
        field.map_or(Ok(Self::Update), str::parse)
    }
}

/// The product pipeline: the steps a product version goes through, in order, and the status
/// each leaves behind. The one place these rules live (the outbox engine, rvcctl replay and
/// reconcile ask it).
impl OutboxKind {
    /// The pipeline's steps in order (`embed` is not one of them).
    pub const PIPELINE: [OutboxKind; 3] = [
        OutboxKind::UploadImages,
        OutboxKind::Vectorize,
        OutboxKind::Publish,
    ];

    /// Whether this kind is a step of the product pipeline (it moves the product's status).
    pub fn is_pipeline_step(self) -> bool {
        self.step_index().is_some()
    }

    /// Position in the pipeline (earlier steps are smaller); `None` outside it.
    pub fn step_index(self) -> Option<usize> {
        Self::PIPELINE.iter().position(|k| *k == self)
    }

    /// The step that follows this one, if any.
    pub fn next(self) -> Option<OutboxKind> {
        match self {
            OutboxKind::UploadImages => Some(OutboxKind::Vectorize),
            OutboxKind::Vectorize => Some(OutboxKind::Publish),
            OutboxKind::Publish | OutboxKind::Embed => None,
        }
    }

    /// Product status once this step is done (`None`: the step leaves the status alone).
    pub fn status_when_done(self) -> Option<ProductStatus> {
        match self {
            OutboxKind::UploadImages => Some(ProductStatus::ImagesStored),
            OutboxKind::Vectorize => Some(ProductStatus::Vectorized),
            OutboxKind::Publish => Some(ProductStatus::Indexed),
            OutboxKind::Embed => None,
        }
    }

    /// The status a product had before this step ran (what it goes back to when the step
    /// runs again after a replay); `None` outside the pipeline.
    pub fn status_before(self) -> Option<ProductStatus> {
        match self {
            OutboxKind::UploadImages => Some(ProductStatus::Registered),
            OutboxKind::Vectorize => Some(ProductStatus::ImagesStored),
            OutboxKind::Publish => Some(ProductStatus::Vectorized),
            OutboxKind::Embed => None,
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
    fn embed_is_outside_the_pipeline() {
        assert!(!OutboxKind::Embed.is_pipeline_step());
        assert_eq!(OutboxKind::Embed.status_when_done(), None);
        assert_eq!(OutboxKind::Embed.next(), None);
        assert_eq!(
            OutboxKind::PIPELINE.map(|k| k.step_index()),
            [Some(0), Some(1), Some(2)]
        );
        assert_eq!("building".parse::<ModelState>(), Ok(ModelState::Building));
    }

    #[test]
    fn version_change_defaults_to_update() {
        assert_eq!(
            VersionChange::from_payload_field(None),
            Ok(VersionChange::Update)
        );
        assert_eq!(
            VersionChange::from_payload_field(Some("archive")),
            Ok(VersionChange::Archive)
        );
        assert!(VersionChange::from_payload_field(Some("purge")).is_err());
    }

    #[test]
    fn steps_chain_to_indexed() {
        let mut k = OutboxKind::UploadImages;
        let mut seen = vec![k.status_when_done().unwrap()];
        while let Some(n) = k.next() {
            assert_eq!(n.status_before(), k.status_when_done());
            k = n;
            seen.push(k.status_when_done().unwrap());
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
