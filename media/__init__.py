"""The media relay: an aiortc SFU forwarding encoded media between participants of a room
without transcoding, with rooms on worker processes (`media.service.MediaService`)."""
