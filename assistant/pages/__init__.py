"""The residents' pages: the community-centre kiosk (`/kiosk`) and the phone web chat (`/chat`)."""
