from freshet.gateway.app import create_app
from freshet.gateway.settings import GatewaySettings
from freshet.kit.service import serve

settings = GatewaySettings()
serve(create_app(settings), settings)
