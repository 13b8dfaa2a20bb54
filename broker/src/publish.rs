//! Metadata publishing (Kafka's `MetadataPublisher`): every new metadata image, however it was
//! committed (the local metadata log, or the Raft quorum in cluster mode), reaches the components
//! that follow metadata, in log order, from one task. Nobody "syncs" after a write: a writer that
//! must read its own write waits until the image holding it has been published.

use std::sync::Arc;
use std::time::Duration;

use fjord_metadata::MetadataImage;
use tokio::sync::watch;

/// A component that brings its state in line with each new image (partitions, coordinators,
/// tiering). Called on a blocking thread, one image at a time, in log order; an image may skip
/// intermediate ones, so a publisher compares states, not records.
pub trait MetadataPublisher: Send + Sync + std::fmt::Debug {
    /// Short name for logs.
    fn name(&self) -> &'static str;
    /// Applies `image`. An error is logged and reported to writers waiting for this image; later
    /// images are still published.
    fn publish(&self, image: &Arc<MetadataImage>) -> Result<(), String>;
}

/// What has been published so far: the newest image offset, and the error of the last publish
/// if it failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    pub offset: u64,
    pub error: Option<String>,
}

/// The publishing pipeline: newer images are offered in, published by [`Publishing::run`].
#[derive(Debug)]
pub struct Publishing {
    images: watch::Sender<Arc<MetadataImage>>,
    published: watch::Sender<Published>,
    publishers: Vec<Arc<dyn MetadataPublisher>>,
}

impl Publishing {
    /// A pipeline whose first image, `initial`, counts as published (the components were opened
    /// from it at start-up).
    pub fn new(initial: Arc<MetadataImage>, publishers: Vec<Arc<dyn MetadataPublisher>>) -> Publishing {
        let offset = initial.offset;
        Publishing {
            images: watch::channel(initial).0,
            published: watch::channel(Published { offset, error: None }).0,
            publishers,
        }
    }

    /// Offers a committed image; ignored unless it is newer than the last one offered (two
    /// writers may offer out of order).
    pub fn offer(&self, image: Arc<MetadataImage>) {
        self.images.send_if_modified(|current| {
            if image.offset > current.offset {
                *current = image;
                true
            } else {
                false
            }
        });
    }

    /// The newest published image offset.
    pub fn published(&self) -> Published {
        self.published.borrow().clone()
    }

    /// Waits (async) until the image at `offset` or a later one has been published; returns the
    /// publish error if the covering publish failed.
    pub async fn wait_published(&self, offset: u64) -> Result<(), String> {
        let mut rx = self.published.subscribe();
        let done = rx
            .wait_for(|p| p.offset >= offset)
            .await
            .map_err(|_| "metadata publishing stopped".to_string())?;
        match &done.error {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// [`Publishing::wait_published`] from a blocking thread (admin operations run on one), with
    /// a bound so a stuck publisher cannot hang a request forever.
    pub fn wait_published_blocking(&self, offset: u64, timeout: Duration) -> Result<(), String> {
        let handle = tokio::runtime::Handle::current();
        handle.block_on(async {
            tokio::time::timeout(timeout, self.wait_published(offset))
                .await
                .map_err(|_| format!("metadata offset {offset} was not published within {timeout:?}"))?
        })
    }

    /// Publishes every new image until `shutdown`, each on a blocking thread (file I/O).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut images = self.images.subscribe();
        loop {
            // An image offered before this task subscribed is already marked seen: publish it
            // too, not only those offered later.
            let pending = images.borrow_and_update().offset > self.published.borrow().offset;
            if !pending {
                tokio::select! {
                    changed = images.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                }
            }
            let image = images.borrow_and_update().clone();
            if image.offset <= self.published.borrow().offset {
                continue;
            }
            let this = self.clone();
            let result = tokio::task::spawn_blocking(move || this.publish_all(&image)).await;
            let published = match result {
                Ok(published) => published,
                Err(error) => {
                    tracing::error!(%error, "metadata publisher panicked");
                    return;
                }
            };
            self.published.send_replace(published);
        }
    }

    fn publish_all(&self, image: &Arc<MetadataImage>) -> Published {
        let mut first_error = None;
        for publisher in &self.publishers {
            if let Err(error) = publisher.publish(image) {
                tracing::error!(publisher = publisher.name(), offset = image.offset, %error, "publishing metadata failed");
                first_error.get_or_insert(format!("{}: {error}", publisher.name()));
            }
        }
        Published {
            offset: image.offset,
            error: first_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Debug, Default)]
    struct Recorder {
        seen: Mutex<Vec<u64>>,
        fail_at: Option<u64>,
    }

    impl MetadataPublisher for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn publish(&self, image: &Arc<MetadataImage>) -> Result<(), String> {
            self.seen.lock().push(image.offset);
            match self.fail_at {
                Some(at) if at == image.offset => Err("boom".into()),
                _ => Ok(()),
            }
        }
    }

    fn image_at(offset: u64) -> Arc<MetadataImage> {
        let mut image = MetadataImage::default();
        for _ in 0..offset {
            image = image.apply(&[]).expect("empty batch applies");
        }
        Arc::new(image)
    }

    #[tokio::test]
    async fn images_are_published_in_order_and_writers_wait_for_theirs() {
        let recorder = Arc::new(Recorder {
            fail_at: Some(3),
            ..Recorder::default()
        });
        let publishing = Arc::new(Publishing::new(image_at(0), vec![recorder.clone()]));
        let (_stop, shutdown) = watch::channel(false);
        tokio::spawn(publishing.clone().run(shutdown));
        publishing.offer(image_at(2));
        publishing.offer(image_at(1)); // older: ignored
        publishing.wait_published(2).await.expect("published");
        assert_eq!(*recorder.seen.lock(), vec![2]);
        publishing.offer(image_at(3));
        let error = publishing.wait_published(3).await.expect_err("publisher failed");
        assert!(error.contains("boom"), "{error}");
        publishing.offer(image_at(4));
        publishing.wait_published(4).await.expect("later images still publish");
        assert_eq!(publishing.published().offset, 4);
    }
}
